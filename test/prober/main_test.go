package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	d := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{nil, 50, 0},
		{d(7), 50, 7 * time.Millisecond},
		{d(7), 99, 7 * time.Millisecond},
		{d(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{d(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{d(hundred...), 50, 50 * time.Millisecond},
		{d(hundred...), 99, 99 * time.Millisecond},
		{d(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11), 99, 11 * time.Millisecond},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("percentile(%v, %v) = %v; want %v", tc.sorted, tc.p, got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	t0 := time.Date(2026, 7, 8, 12, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	samples := []sample{
		{start: at(0), latency: 10 * ms},
		{start: at(100 * ms), latency: 2000 * ms, kind: kindTimeout, err: context.DeadlineExceeded},
		{start: at(2100 * ms), latency: 1 * ms, kind: kindRefused, err: io.EOF},
		{start: at(2150 * ms), latency: 30 * ms},
		{start: at(2200 * ms), latency: 20 * ms},
	}
	st := summarize(samples, t0, at(2300*ms))
	if st.Count != 5 || st.OK != 3 || st.Fail != 2 || st.FailByKind[kindTimeout] != 1 || st.FailByKind[kindRefused] != 1 {
		t.Errorf("counts %+v", st)
	}
	// Sorted latencies 1 10 20 30 2000: nearest rank 50% is the 3rd, 99% the 5th.
	if st.P50MS != 20 || st.P99MS != 2000 || st.WorstMS != 2000 {
		t.Errorf("latencies p50 %v p99 %v worst %v", st.P50MS, st.P99MS, st.WorstMS)
	}
	// From the answer at 10 ms to the next one at 2150+30 ms.
	if st.LongestGapMS != 2170 || st.LongestGapStart != "2026-07-08T12:00:00.010Z" || st.LongestGapEnd != "2026-07-08T12:00:02.180Z" {
		t.Errorf("gap %v from %s to %s", st.LongestGapMS, st.LongestGapStart, st.LongestGapEnd)
	}
	if st.FirstFail != "2026-07-08T12:00:00.100Z" || st.LastFail != "2026-07-08T12:00:02.100Z" || st.LastError != "EOF" {
		t.Errorf("failures first %s last %s error %q", st.FirstFail, st.LastFail, st.LastError)
	}
	want := "PROBE ok=3 fail=2 p50_ms=20.0 p99_ms=2000.0 worst_ms=2000.0 longest_gap_ms=2170.0 " +
		"first_fail=2026-07-08T12:00:00.100Z last_fail=2026-07-08T12:00:02.100Z"
	if got := st.probeLine(); got != want {
		t.Errorf("probe line\n got %s\nwant %s", got, want)
	}

	// A server that never answered: the whole run is the gap.
	st = summarize([]sample{{start: at(0), latency: 5 * ms, kind: kindRefused, err: io.EOF}}, t0, at(time.Second))
	if st.LongestGapMS != 1000 || st.OK != 0 {
		t.Errorf("never answered: %+v", st)
	}
	// Nothing at all.
	st = summarize(nil, t0, at(time.Second))
	if st.Count != 0 || st.P50MS != 0 || st.LongestGapMS != 1000 || !strings.HasSuffix(st.probeLine(), "first_fail=- last_fail=-") {
		t.Errorf("no samples: %+v %s", st, st.probeLine())
	}
}

// The probe loop against a server with injected delays and failures: which probes fail, of what
// kind, and what the statistics make of it.
func TestProbeLoopAgainstAServerThatStalls(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const last = 12 // the handler ends the run on this request; its probe is not counted
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 3: // a stall past the probe timeout
			select {
			case <-time.After(400 * time.Millisecond):
			case <-r.Context().Done():
			}
		case 5:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 6: // the connection dies without an answer
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		case 8: // slow, but within the timeout
			time.Sleep(40 * time.Millisecond)
		case 9:
			w.WriteHeader(http.StatusNotFound) // an answer: the server is there
		case last:
			cancel()
			<-r.Context().Done()
		}
	}))
	defer srv.Close()

	var log bytes.Buffer
	p := newProber(srv.URL, 10*time.Millisecond, 150*time.Millisecond, &log)
	samples, start, end := p.run(ctx)
	if len(samples) != last-1 {
		t.Fatalf("%d samples, want %d", len(samples), last-1)
	}
	for i, s := range samples {
		want := map[int]string{3: kindTimeout, 5: kindStatus, 6: kindError}[i+1]
		if s.kind != want {
			t.Errorf("probe %d: kind %q (%v), want %q", i+1, s.kind, s.err, want)
		}
	}
	st := summarize(samples, start, end)
	if st.OK != 8 || st.Fail != 3 {
		t.Errorf("ok %d fail %d; want 8 and 3", st.OK, st.Fail)
	}
	if st.WorstMS < 150 || st.WorstMS > 1000 || st.P99MS != st.WorstMS {
		t.Errorf("worst %v ms, p99 %v ms; want the 150 ms timeout", st.WorstMS, st.P99MS)
	}
	if st.P50MS >= 40 {
		t.Errorf("p50 %v ms; want the quick answers'", st.P50MS)
	}
	// From the end of probe 2 to the end of probe 4: the timed-out probe 3 and an interval.
	if st.LongestGapMS < 150 || st.LongestGapMS > 1000 {
		t.Errorf("longest gap %v ms; want about 160", st.LongestGapMS)
	}
	if st.FirstFail != stamp(samples[2].start) || st.LastFail != stamp(samples[5].start) {
		t.Errorf("first fail %s last fail %s", st.FirstFail, st.LastFail)
	}
	if got := log.String(); strings.Count(got, "no answer") != 2 || strings.Count(got, "answering again") != 2 {
		t.Errorf("transition lines:\n%s", got)
	}
}

func TestProbeKindRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := newProber("http://"+addr+"/", time.Millisecond, time.Second, io.Discard)
	s, aborted := p.probe(context.Background())
	if aborted || s.kind != kindRefused {
		t.Errorf("probe of a closed port: kind %q err %v aborted %t; want refused", s.kind, s.err, aborted)
	}
}

// The whole command: flags in, the two lines (or JSON) out.
func TestRunOutput(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()

	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--url", srv.URL + "/", "--interval", "10ms", "--timeout", "1s", "--duration", "150ms"}, &stdout, &stderr)
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	probe := regexp.MustCompile(`^PROBE ok=(\d+) fail=0 p50_ms=\d+\.\d p99_ms=\d+\.\d worst_ms=\d+\.\d longest_gap_ms=\d+\.\d first_fail=- last_fail=-$`)
	if code != 0 || len(lines) != 2 || !probe.MatchString(lines[0]) || !strings.HasPrefix(lines[1], "prober: "+srv.URL+"/: ") {
		t.Fatalf("status %d, stdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if m := probe.FindStringSubmatch(lines[0]); m[1] == "0" {
		t.Errorf("no successful probe in 150 ms: %s", lines[0])
	}

	stdout.Reset()
	stderr.Reset()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond) // as SIGTERM would
	defer cancel()
	code = run(ctx, []string{"--url", srv.URL, "--duration", "0", "--json"}, &stdout, &stderr)
	var st map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &st); code != 0 || err != nil {
		t.Fatalf("--json: status %d, %v in %q", code, err, stdout.String())
	}
	for _, key := range []string{"url", "start", "end", "count", "ok", "fail", "fail_by_kind", "p50_ms", "p99_ms", "worst_ms", "longest_gap_ms"} {
		if _, ok := st[key]; !ok {
			t.Errorf("--json lacks %q: %s", key, stdout.String())
		}
	}
	if _, ok := st["first_fail"]; ok {
		t.Errorf("--json has first_fail without failures: %s", stdout.String())
	}
	if !strings.HasPrefix(stderr.String(), "prober: ") {
		t.Errorf("--json: the human line is not on stderr: %q", stderr.String())
	}
}

func TestFlags(t *testing.T) {
	c, err := parseFlags([]string{"--url", "http://127.0.0.1:3773/"}, io.Discard)
	if want := (config{URL: "http://127.0.0.1:3773/", Interval: 50 * time.Millisecond, Timeout: 2 * time.Second, Duration: time.Minute}); err != nil || c != want {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	for _, args := range [][]string{
		{},
		{"--url", "127.0.0.1:3773"},
		{"--url", "ftp://x/"},
		{"--url", "http://x/", "--interval", "0"},
		{"--url", "http://x/", "--timeout", "-1s"},
		{"--url", "http://x/", "--duration", "-1s"},
		{"--url", "http://x/", "extra"},
		{"--url", "http://x/", "--bogus"},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), args, io.Discard, &stderr); code != 2 || stderr.Len() == 0 {
			t.Errorf("run(%q) = %d, stderr %q; want 2 and a reason", args, code, stderr.String())
		}
	}
}

func TestWriteSamples(t *testing.T) {
	t0 := time.Date(2026, 7, 8, 12, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	clk := monoClock{at: t0.Add(time.Second), mono: 5 * time.Second}
	samples := []sample{
		{start: t0, latency: 12345 * time.Microsecond},
		{start: t0.Add(1050 * ms), latency: 2 * time.Second, kind: kindTimeout, err: context.DeadlineExceeded},
	}
	var b bytes.Buffer
	if err := writeSamples(&b, samples, clk); err != nil {
		t.Fatal(err)
	}
	if want := "4000000 12345 ok\n5050000 2000000 timeout\n"; b.String() != want {
		t.Errorf("samples\n%s\nwant\n%s", b.String(), want)
	}
}
