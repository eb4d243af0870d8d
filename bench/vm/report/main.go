// Command report turns what bench/vm/guest printed (on stdin) into the tables of BENCHMARKS.md
// §1 and §4, and with --png into a picture of GET / latency over time.
//
//	bench/vm/report [--png FILE] <results.txt
//
// Tables, from the BENCH lines: per configuration, over its runs, how often the server survived
// and the right process died, the worst and p99 GET / latency, the time from the balloon crossing
// the high mark to its death, and the restarts; then the OOM-kill-to-journal latency.
//
// Picture, from the SERIES lines (one per run: every probe in ms since the balloon started, and
// when it was killed on the same clock): one panel per configuration that had the balloon in an
// agent, every run drawn faintly and one representative run drawn bold (see plot.go). The same
// input gives the same PNG byte for byte.
//
// Other lines (PASS, INFO, ...) are ignored. Exit status: 0; 1 when the picture cannot be drawn
// or written; 2 for a usage error or unreadable input.
//
// It is a module of its own (go.mod here): the plotting library it needs (gonum.org/v1/plot)
// stays out of the product module's dependencies.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	png := fs.String("png", "", "also draw GET / latency over time into this PNG file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "report: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	res, err := parse(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "report: %v\n", err)
		return 2
	}
	writeTables(stdout, res)
	if *png == "" {
		return 0
	}
	if err := writePNGFile(*png, res.series); err != nil {
		fmt.Fprintf(stderr, "report: --png %s: %v\n", *png, err)
		return 1
	}
	return 0
}

// run is one BENCH line: its key=value fields.
type benchRun map[string]string

func (r benchRun) num(k string) (float64, bool) {
	v, err := strconv.ParseFloat(r[k], 64)
	return v, err == nil
}

// results is the parsed input: BENCH runs grouped by "config what" in order of appearance, and
// the SERIES lines.
type results struct {
	groups map[string][]benchRun
	order  []string
	series []series
}

func parse(in io.Reader) (results, error) {
	res := results{groups: map[string][]benchRun{}}
	s := bufio.NewScanner(in)
	s.Buffer(nil, 16<<20) // a SERIES line holds every probe of a run: ~12 bytes a probe
	for n := 1; s.Scan(); n++ {
		kind, rest, _ := strings.Cut(strings.TrimRight(s.Text(), "\r"), " ")
		switch kind {
		case "BENCH":
			r := benchRun(fields(rest))
			key := r["config"] + " " + r["what"]
			if _, ok := res.groups[key]; !ok {
				res.order = append(res.order, key)
			}
			res.groups[key] = append(res.groups[key], r)
		case "SERIES":
			sr, err := parseSeries(fields(rest))
			if err != nil {
				return res, fmt.Errorf("line %d: SERIES: %w", n, err)
			}
			res.series = append(res.series, sr)
		}
	}
	return res, s.Err()
}

func fields(s string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

func writeTables(w io.Writer, res results) {
	fmt.Fprintln(w, "| configuration | balloon in | runs | server survived | right process died | worst GET / (max over runs) | worst GET / (median of runs) | p99 GET / (median) | probes failed | high mark to death (median / max) | victim not dead | unit restarts |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	worst := map[string]float64{}
	for _, key := range res.order {
		rs := res.groups[key]
		if rs[0]["config"] == "event-latency" {
			continue
		}
		var survived, right, notDead, restarts, fails int
		var worsts, p99s, kills []float64
		for _, r := range rs {
			survived += atoi(r["survived"])
			right += atoi(r["right"])
			restarts += atoi(r["restarts"])
			fails += atoi(r["probe_fail"])
			if r["victim_died"] != "1" {
				notDead++
			}
			if v, ok := r.num("worst_ms"); ok {
				worsts = append(worsts, v)
			}
			if v, ok := r.num("p99_ms"); ok {
				p99s = append(p99s, v)
			}
			if v, ok := r.num("kill_ms"); ok {
				kills = append(kills, v)
			}
		}
		worst[key] = maxOf(worsts)
		what := rs[0]["what"]
		rightCol := fmt.Sprintf("%d/%d", right, len(rs))
		if what == "server" {
			rightCol = "n/a"
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d/%d | %s | %.0f ms | %.0f ms | %.0f ms | %d | %s / %s | %d | %d |\n",
			rs[0]["config"], what, len(rs), survived, len(rs), rightCol, maxOf(worsts), median(worsts), median(p99s), fails,
			msOr(median(kills), len(kills)), msOr(maxOf(kills), len(kills)), notDead, restarts)
	}
	if b, s := worst["baseline agent"], worst["supervise agent"]; b > 0 {
		fmt.Fprintf(w, "\nworst GET / latency, t3-supervise / baseline: %.0f ms / %.0f ms = %.3f (goal: <= 1000 ms and <= 0.1)\n", s, b, s/b)
	}
	if lat := res.groups["event-latency "]; len(lat) > 0 {
		var v, seen []float64
		missing := 0
		for _, r := range lat {
			if x, ok := r.num("latency_ms"); ok {
				v = append(v, x)
			} else {
				missing++
			}
			if x, ok := r.num("seen_ms"); ok {
				seen = append(seen, x)
			}
		}
		fmt.Fprintf(w, "\nkernel oom_kill to the supervisor's journal entry, %d kills: median %.1f ms, worst %.1f ms, %d without an entry (goal: <= 100 ms)\n",
			len(lat), median(v), maxOf(v), missing)
		if len(seen) > 0 {
			fmt.Fprintf(w, "of which kernel oom_kill to the supervisor reading the counter: median %.1f ms, worst %.1f ms\n", median(seen), maxOf(seen))
		}
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// median is the lower median: the value BENCHMARKS.md's "median of runs" columns report.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[(len(s)-1)/2]
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func msOr(v float64, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f ms", v)
}
