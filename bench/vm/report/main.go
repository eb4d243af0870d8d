// Command report turns the BENCH lines of bench/vm/guest (on stdin) into the tables of
// BENCHMARKS.md: per configuration, over its runs, how often the server survived and the right
// process died, the worst and p99 GET / latency, the time from the balloon crossing the high
// mark to its death, and the restarts; then the OOM-kill-to-journal latency.
package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

type run map[string]string

func (r run) num(k string) (float64, bool) {
	v, err := strconv.ParseFloat(r[k], 64)
	return v, err == nil
}

func main() {
	groups := map[string][]run{}
	var order []string
	s := bufio.NewScanner(os.Stdin)
	for s.Scan() {
		r := run{}
		for _, f := range strings.Fields(strings.TrimPrefix(s.Text(), "BENCH ")) {
			k, v, _ := strings.Cut(f, "=")
			r[k] = v
		}
		key := r["config"] + " " + r["what"]
		if _, ok := groups[key]; !ok {
			order = append(order, key)
		}
		groups[key] = append(groups[key], r)
	}
	fmt.Println("| configuration | balloon in | runs | server survived | right process died | worst GET / (max over runs) | worst GET / (median of runs) | p99 GET / (median) | probes failed | high mark to death (median / max) | victim not dead | unit restarts |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	worst := map[string]float64{}
	for _, key := range order {
		rs := groups[key]
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
		fmt.Printf("| %s | %s | %d | %d/%d | %s | %.0f ms | %.0f ms | %.0f ms | %d | %s / %s | %d | %d |\n",
			rs[0]["config"], what, len(rs), survived, len(rs), rightCol, maxOf(worsts), median(worsts), median(p99s), fails,
			msOr(median(kills), len(kills)), msOr(maxOf(kills), len(kills)), notDead, restarts)
	}
	if b, s := worst["baseline agent"], worst["supervise agent"]; b > 0 {
		fmt.Printf("\nworst GET / latency, t3-supervise / baseline: %.0f ms / %.0f ms = %.3f (goal: <= 1000 ms and <= 0.1)\n", s, b, s/b)
	}
	if lat := groups["event-latency "]; len(lat) > 0 {
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
		fmt.Printf("\nkernel oom_kill to the supervisor's journal entry, %d kills: median %.1f ms, worst %.1f ms, %d without an entry (goal: <= 100 ms)\n",
			len(lat), median(v), maxOf(v), missing)
		if len(seen) > 0 {
			fmt.Printf("of which kernel oom_kill to the supervisor reading the counter: median %.1f ms, worst %.1f ms\n", median(seen), maxOf(seen))
		}
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

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
