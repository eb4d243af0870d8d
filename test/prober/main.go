// Command prober measures how a server answers while something else happens to it: it GETs a
// URL at an interval, from outside the workload under test, and prints what it saw.
//
//	prober --url http://127.0.0.1:3773/ --interval 50ms --timeout 2s --duration 60s [--json]
//
// It stops at --duration or on SIGTERM/SIGINT and prints one machine-readable line
//
//	PROBE ok=N fail=N p50_ms=.. p99_ms=.. worst_ms=.. longest_gap_ms=..
//
// where a failed probe counts with its full wait as latency, and longest_gap_ms is the longest
// stretch without a successful answer (what a client's watchdog feels).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"
)

type sample struct {
	at      time.Time
	latency time.Duration
	ok      bool
}

// Stats summarises a run.
type Stats struct {
	OK           int     `json:"ok"`
	Fail         int     `json:"fail"`
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	Worstms      float64 `json:"worst_ms"`
	LongestGapms float64 `json:"longest_gap_ms"`
	FirstFail    string  `json:"first_fail,omitempty"`
	LastFail     string  `json:"last_fail,omitempty"`
}

func summarize(samples []sample, start, end time.Time) Stats {
	var st Stats
	var lats []time.Duration
	lastGood := start
	var gap time.Duration
	for _, s := range samples {
		lats = append(lats, s.latency)
		if s.ok {
			st.OK++
			done := s.at.Add(s.latency)
			gap = max(gap, done.Sub(lastGood))
			lastGood = done
			continue
		}
		st.Fail++
		if st.FirstFail == "" {
			st.FirstFail = s.at.UTC().Format(time.RFC3339Nano)
		}
		st.LastFail = s.at.UTC().Format(time.RFC3339Nano)
	}
	gap = max(gap, end.Sub(lastGood))
	st.LongestGapms = ms(gap)
	if len(lats) > 0 {
		sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
		st.P50ms = ms(lats[(len(lats)-1)*50/100])
		st.P99ms = ms(lats[(len(lats)-1)*99/100])
		st.Worstms = ms(lats[len(lats)-1])
	}
	return st
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (s Stats) line() string {
	return fmt.Sprintf("PROBE ok=%d fail=%d p50_ms=%.1f p99_ms=%.1f worst_ms=%.1f longest_gap_ms=%.1f",
		s.OK, s.Fail, s.P50ms, s.P99ms, s.Worstms, s.LongestGapms)
}

func probe(ctx context.Context, c *http.Client, url string) (time.Duration, bool) {
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return time.Since(start), false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return time.Since(start), resp.StatusCode < 500
}

func main() {
	url := flag.String("url", "", "URL to GET")
	interval := flag.Duration("interval", 50*time.Millisecond, "time between probe starts")
	timeout := flag.Duration("timeout", 2*time.Second, "one probe's limit")
	duration := flag.Duration("duration", time.Minute, "how long to probe")
	asJSON := flag.Bool("json", false, "print the stats as JSON too")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "prober: --url is required")
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, *duration)
	defer cancel2()
	// A new connection per probe: the listener itself is what is measured.
	c := &http.Client{Timeout: *timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	var samples []sample
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for ctx.Err() == nil {
		at := time.Now()
		lat, ok := probe(ctx, c, *url)
		if ctx.Err() != nil && !ok {
			break // cut off by the end of the run, not by the server
		}
		samples = append(samples, sample{at, lat, ok})
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	st := summarize(samples, start, time.Now())
	fmt.Println(st.line())
	if *asJSON {
		json.NewEncoder(os.Stdout).Encode(st)
	}
}
