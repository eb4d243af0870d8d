package main

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// series is one SERIES line: one balloon run's probes, on the clock of its balloon.
type series struct {
	config, what string
	run          int
	killedBy     string  // pressure_kill, oom_kill (the supervisor's event), kernel, or none
	killedAt     float64 // ms since the balloon started; NaN: not killed
	probes       []probe
}

// probe is one GET /: its start in ms since the balloon started, its latency in ms, and the kind
// of failure ("" for an answer).
type probe struct {
	t, latency float64
	fail       string
}

// parseSeries reads the fields of a SERIES line: config, what, run, killed_by, killed_at_ms
// (a number or "none") and probes, a comma-separated list of t:latency[:kind].
func parseSeries(f map[string]string) (series, error) {
	s := series{config: f["config"], what: f["what"], killedBy: f["killed_by"], killedAt: math.NaN()}
	var err error
	if s.config == "" || s.what == "" {
		return s, errors.New("no config or what")
	}
	if s.run, err = strconv.Atoi(f["run"]); err != nil {
		return s, fmt.Errorf("run %q: %w", f["run"], err)
	}
	if k := f["killed_at_ms"]; k != "none" {
		if s.killedAt, err = strconv.ParseFloat(k, 64); err != nil || !finite(s.killedAt) {
			return s, fmt.Errorf("killed_at_ms %q: want a number of ms or none", k)
		}
	}
	if f["probes"] == "" {
		return s, errors.New("no probes")
	}
	for _, p := range strings.Split(f["probes"], ",") {
		parts := strings.Split(p, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return s, fmt.Errorf("probe %q: want t:latency[:kind]", p)
		}
		t, err1 := strconv.ParseFloat(parts[0], 64)
		lat, err2 := strconv.ParseFloat(parts[1], 64)
		if err := errors.Join(err1, err2); err != nil {
			return s, fmt.Errorf("probe %q: %w", p, err)
		}
		if !finite(t) || !finite(lat) {
			return s, fmt.Errorf("probe %q: not a finite time and latency", p)
		}
		pr := probe{t: t, latency: lat}
		if len(parts) == 3 {
			pr.fail = parts[2]
		}
		s.probes = append(s.probes, pr)
	}
	return s, nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// worst is the run's longest GET /: the prober's worst_ms of the same run.
func (s series) worst() float64 {
	w := 0.0
	for _, p := range s.probes {
		w = max(w, p.latency)
	}
	return w
}

// panel is one configuration's runs and the one drawn bold.
type panel struct {
	config string
	runs   []series
	rep    int // index into runs
}

// panels groups the runs with the balloon in an agent by configuration, in order of appearance,
// and picks each one's representative: the median-worst run, the run whose worst GET / is the
// lower median of the runs' worst (BENCHMARKS.md's "worst GET / (median of runs)"; the lowest run
// number among equals). A typical run, not the luckiest nor the unluckiest; the faint others
// show the spread.
func panels(all []series) []panel {
	var out []panel
	at := map[string]int{}
	for _, s := range all {
		if s.what != "agent" {
			continue
		}
		i, ok := at[s.config]
		if !ok {
			i = len(out)
			at[s.config] = i
			out = append(out, panel{config: s.config})
		}
		out[i].runs = append(out[i].runs, s)
	}
	for i := range out {
		rs := out[i].runs
		idx := make([]int, len(rs))
		for j := range idx {
			idx[j] = j
		}
		sort.SliceStable(idx, func(a, b int) bool {
			wa, wb := rs[idx[a]].worst(), rs[idx[b]].worst()
			if wa != wb {
				return wa < wb
			}
			return rs[idx[a]].run < rs[idx[b]].run
		})
		out[i].rep = idx[(len(idx)-1)/2]
	}
	return out
}
