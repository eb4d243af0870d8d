// Command prober measures how a server answers while something happens to it: it GETs a URL at
// a fixed interval from outside the workload under test (in the VM tests, while a runaway agent
// is killed next to t3 serve) and at the end says what a client would have felt.
//
//	prober --url http://127.0.0.1:3773/ [--interval 50ms] [--timeout 2s] [--duration 60s] [--json]
//	       [--samples FILE]
//
// It probes until --duration has passed (0: no limit) or SIGTERM/SIGINT arrives, then prints on
// stdout one machine-readable line and one line for people:
//
//	PROBE ok=N fail=N p50_ms=X p99_ms=X worst_ms=X longest_gap_ms=X first_fail=T last_fail=T
//	prober: http://...: 1200 probes in 60.0s, 1195 ok, 5 failed (5 timeout) from ... to ...; ...
//
// Milliseconds have one decimal; T is an RFC 3339 UTC time with milliseconds, or "-" when no
// probe failed. With --json stdout holds only one JSON object instead (fields below) and the
// human line goes to stderr. While it runs, stderr gets a line when the server stops answering
// and when it answers again.
//
// With --samples (Linux only) FILE also gets every probe, one line each, in the order they ran:
//
//	START_US LATENCY_US KIND
//
// START_US is when the probe started on CLOCK_MONOTONIC in microseconds, the clock of journald's
// __MONOTONIC_TIMESTAMP and of the supervisor's T3_SEEN_MONOTONIC_USEC, so a probe can be put
// next to an event of the same boot; LATENCY_US is its latency as defined below; KIND is "ok" or
// the failure's kind. FILE is created before the first probe and written at the end.
//
// Definitions:
//   - A probe is one GET on a new connection (no keep-alive: a kept-alive connection can outlive
//     a dropped listener) with its own --timeout, through no proxy. It succeeds when a response
//     with a status below 500 has been read whole within the timeout; otherwise it fails, of
//     kind "timeout", "refused" (nothing listens), "status" (5xx) or "error" (reset, EOF, ...).
//   - Probes start every --interval; one that takes longer delays the next (never two at once).
//   - Latency is the time a probe took to end, successful or not, so a timed-out probe counts
//     with the full timeout and a stall cannot hide from worst_ms. p50 and p99 are nearest-rank
//     percentiles over every probe.
//   - longest_gap_ms is the longest time without a successful answer: between the ends of
//     successive successful probes, from the start of the run to the first, and from the last to
//     the end of the run. A healthy server shows about one interval plus one latency.
//   - A probe cut off by the end of the run is not counted.
//
// Exit status: 0 after a run, whatever it measured; 1 when the --samples file cannot be written;
// 2 for a usage error (an unusable --samples path included).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is the validated command line.
type config struct {
	URL      string
	Interval time.Duration
	Timeout  time.Duration
	Duration time.Duration // 0: until the context ends
	JSON     bool
	Samples  string // "": none
}

// parseFlags reads and checks the command line; flag.ErrHelp after --help.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("prober", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.URL, "url", "", "URL to GET (required), e.g. http://127.0.0.1:3773/")
	fs.DurationVar(&c.Interval, "interval", 50*time.Millisecond, "time between the starts of two probes")
	fs.DurationVar(&c.Timeout, "timeout", 2*time.Second, "how long one probe may take")
	fs.DurationVar(&c.Duration, "duration", 60*time.Second, "how long to probe; 0: until SIGTERM or SIGINT")
	fs.BoolVar(&c.JSON, "json", false, "print the result as one JSON object on stdout")
	fs.StringVar(&c.Samples, "samples", "", "write every probe to this file: start (CLOCK_MONOTONIC, µs), latency (µs), kind")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case c.URL == "":
		return c, errors.New("--url is required")
	case c.Interval <= 0:
		return c, fmt.Errorf("--interval %v: must be positive", c.Interval)
	case c.Timeout <= 0:
		return c, fmt.Errorf("--timeout %v: must be positive", c.Timeout)
	case c.Duration < 0:
		return c, fmt.Errorf("--duration %v: must not be negative", c.Duration)
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("--url %q: want an http:// or https:// URL", c.URL)
	}
	return c, nil
}

// run probes as args say until ctx ends or the duration passes, prints the result, and returns
// the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "prober: %v\n", err)
		return 2
	}
	var file *os.File
	var clk monoClock
	if cfg.Samples != "" {
		if clk, err = readMonoClock(); err == nil {
			file, err = os.Create(cfg.Samples)
		}
		if err != nil {
			fmt.Fprintf(stderr, "prober: --samples %s: %v\n", cfg.Samples, err)
			return 2
		}
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	p := newProber(cfg.URL, cfg.Interval, cfg.Timeout, stderr)
	samples, start, end := p.run(ctx)
	st := summarize(samples, start, end)
	st.URL = cfg.URL
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(st); err != nil {
			fmt.Fprintf(stderr, "prober: %v\n", err)
		}
		fmt.Fprintln(stderr, st.humanLine())
	} else {
		fmt.Fprintln(stdout, st.probeLine())
		fmt.Fprintln(stdout, st.humanLine())
	}
	if file != nil {
		err := writeSamples(file, samples, clk)
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			fmt.Fprintf(stderr, "prober: --samples %s: %v\n", cfg.Samples, err)
			return 1
		}
	}
	return 0
}
