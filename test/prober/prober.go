package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Kinds of failed probes.
const (
	kindTimeout = "timeout" // no whole answer within --timeout: a stalled or livelocked server
	kindRefused = "refused" // connection refused: nothing listens (a dropped listener, a dead server)
	kindStatus  = "status"  // an answer with status 500 or more
	kindError   = "error"   // anything else: reset, EOF, ...
)

// sample is one probe.
type sample struct {
	start   time.Time
	latency time.Duration
	kind    string // "" for a success
	err     error
}

func (s sample) ok() bool { return s.kind == "" }

// prober GETs one URL, one probe at a time.
type prober struct {
	url      string
	interval time.Duration
	timeout  time.Duration
	client   *http.Client
	log      io.Writer // transitions: the server stops answering, answers again
}

func newProber(url string, interval, timeout time.Duration, log io.Writer) *prober {
	return &prober{
		url:      url,
		interval: interval,
		timeout:  timeout,
		log:      log,
		// A new connection per probe measures the listener itself; no proxy from the environment.
		client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}},
	}
}

// run probes every interval until ctx ends, and returns the samples and the run's bounds.
func (p *prober) run(ctx context.Context) (samples []sample, start, end time.Time) {
	start = time.Now()
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	var downSince time.Time // end of the last success, while failing
	lastGood, failing, failed := start, false, 0
	for {
		s, aborted := p.probe(ctx)
		if aborted {
			break
		}
		samples = append(samples, s)
		switch {
		case !s.ok() && !failing:
			failing, failed, downSince = true, 1, lastGood
			fmt.Fprintf(p.log, "prober: %s no answer (%s): %v\n", clock(s.start), s.kind, s.err)
		case !s.ok():
			failed++
		case failing:
			failing = false
			done := s.start.Add(s.latency)
			fmt.Fprintf(p.log, "prober: %s answering again after %d failed probe(s), %.1f ms without an answer\n",
				clock(done), failed, ms(done.Sub(downSince)))
		}
		if s.ok() {
			lastGood = s.start.Add(s.latency)
		}
		select {
		case <-ctx.Done():
			return samples, start, time.Now()
		case <-tick.C:
		}
	}
	return samples, start, time.Now()
}

// probe does one GET. aborted means ctx ended first: the probe says nothing about the server.
func (p *prober) probe(ctx context.Context) (s sample, aborted bool) {
	pctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	s.start = time.Now()
	err := p.get(pctx)
	s.latency = time.Since(s.start)
	if err == nil {
		return s, false
	}
	if ctx.Err() != nil {
		return s, true
	}
	s.err = err
	var se statusError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		s.kind = kindTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		s.kind = kindRefused
	case errors.As(err, &se):
		s.kind = kindStatus
	default:
		s.kind = kindError
	}
	return s, false
}

// statusError is an answer with a 5xx status.
type statusError int

func (e statusError) Error() string {
	return fmt.Sprintf("status %d %s", int(e), http.StatusText(int(e)))
}

func (p *prober) get(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<20)); err != nil {
		return err
	}
	if resp.StatusCode >= 500 {
		return statusError(resp.StatusCode)
	}
	return nil
}

// Stats is the result of a run; its JSON form is what --json prints.
type Stats struct {
	URL             string         `json:"url"`
	Start           string         `json:"start"`
	End             string         `json:"end"`
	DurationMS      float64        `json:"duration_ms"`
	Count           int            `json:"count"`
	OK              int            `json:"ok"`
	Fail            int            `json:"fail"`
	FailByKind      map[string]int `json:"fail_by_kind"`
	P50MS           float64        `json:"p50_ms"`
	P99MS           float64        `json:"p99_ms"`
	WorstMS         float64        `json:"worst_ms"`
	LongestGapMS    float64        `json:"longest_gap_ms"`
	LongestGapStart string         `json:"longest_gap_start"`
	LongestGapEnd   string         `json:"longest_gap_end"`
	FirstFail       string         `json:"first_fail,omitempty"`
	LastFail        string         `json:"last_fail,omitempty"`
	LastError       string         `json:"last_error,omitempty"`
}

// summarize computes the statistics of samples taken in order between start and end.
func summarize(samples []sample, start, end time.Time) Stats {
	st := Stats{
		Start:      stamp(start),
		End:        stamp(end),
		DurationMS: ms(end.Sub(start)),
		Count:      len(samples),
		FailByKind: map[string]int{},
	}
	lats := make([]time.Duration, 0, len(samples))
	lastGood := start
	var gap time.Duration
	gapStart, gapEnd := start, start
	for _, s := range samples {
		lats = append(lats, s.latency)
		if s.ok() {
			st.OK++
			done := s.start.Add(s.latency)
			if d := done.Sub(lastGood); d > gap {
				gap, gapStart, gapEnd = d, lastGood, done
			}
			lastGood = done
			continue
		}
		st.Fail++
		st.FailByKind[s.kind]++
		if st.FirstFail == "" {
			st.FirstFail = stamp(s.start)
		}
		st.LastFail = stamp(s.start)
		st.LastError = s.err.Error()
	}
	if d := end.Sub(lastGood); d > gap {
		gap, gapStart, gapEnd = d, lastGood, end
	}
	st.LongestGapMS, st.LongestGapStart, st.LongestGapEnd = ms(gap), stamp(gapStart), stamp(gapEnd)
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	st.P50MS = ms(percentile(lats, 50))
	st.P99MS = ms(percentile(lats, 99))
	if len(lats) > 0 {
		st.WorstMS = ms(lats[len(lats)-1])
	}
	return st
}

// percentile is the nearest-rank p-th percentile of sorted: the smallest value with at least p%
// of the values at or below it; 0 for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// monoClock pairs a reading of CLOCK_MONOTONIC with a time.Time taken at the same moment: Go
// does not expose the absolute value of its monotonic clock, but differences between Times are
// measured on it, so any sample's start maps onto CLOCK_MONOTONIC through this pair.
type monoClock struct {
	at   time.Time
	mono time.Duration
}

func (c monoClock) of(t time.Time) time.Duration { return c.mono + t.Sub(c.at) }

// writeSamples writes one line per sample: start on CLOCK_MONOTONIC, latency (both in µs), kind.
func writeSamples(out io.Writer, samples []sample, clk monoClock) error {
	w := bufio.NewWriter(out)
	for _, s := range samples {
		kind := s.kind
		if s.ok() {
			kind = "ok"
		}
		fmt.Fprintf(w, "%d %d %s\n", clk.of(s.start).Microseconds(), s.latency.Microseconds(), kind)
	}
	return w.Flush()
}

// probeLine is the machine-readable line.
func (st Stats) probeLine() string {
	return fmt.Sprintf("PROBE ok=%d fail=%d p50_ms=%.1f p99_ms=%.1f worst_ms=%.1f longest_gap_ms=%.1f first_fail=%s last_fail=%s",
		st.OK, st.Fail, st.P50MS, st.P99MS, st.WorstMS, st.LongestGapMS, orDash(st.FirstFail), orDash(st.LastFail))
}

// humanLine says the same for people.
func (st Stats) humanLine() string {
	var b strings.Builder
	fmt.Fprintf(&b, "prober: %s: %d probes in %.1fs, %d ok, %d failed", st.URL, st.Count, st.DurationMS/1000, st.OK, st.Fail)
	if st.Fail > 0 {
		var kinds []string
		for _, k := range []string{kindTimeout, kindRefused, kindStatus, kindError} {
			if n := st.FailByKind[k]; n > 0 {
				kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
			}
		}
		fmt.Fprintf(&b, " (%s) from %s to %s, last: %s", strings.Join(kinds, ", "), st.FirstFail, st.LastFail, st.LastError)
	}
	fmt.Fprintf(&b, "; latency p50 %.1f ms, p99 %.1f ms, worst %.1f ms; longest without an answer %.1f ms (%s to %s)",
		st.P50MS, st.P99MS, st.WorstMS, st.LongestGapMS, st.LongestGapStart, st.LongestGapEnd)
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// stamp is t as RFC 3339 UTC with milliseconds.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// clock is t's local time of day with milliseconds, for progress lines.
func clock(t time.Time) string { return t.Format("15:04:05.000") }
