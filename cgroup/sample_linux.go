//go:build linux

package cgroup

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"t3-supervise/internal/procstat"
)

// Sampling: the cgroup files the watch reads, and every workload process, so that a victim can
// be named with what it was just before it died.

type goneProc struct {
	v  Victim
	at time.Time
}

func (t *Tree) memoryEvents(dir string) (MemoryEvents, error) {
	b, err := readFile(t.Dir(dir), "memory.events")
	if err != nil {
		return MemoryEvents{}, err
	}
	ev, err := ParseMemoryEvents(bytes.NewReader(b))
	if err != nil {
		return ev, &Error{Path: t.Dir(dir + "/memory.events"), Err: err}
	}
	return ev, nil
}

func (t *Tree) readUint(dir, file string) (uint64, error) {
	b, err := readFile(t.Dir(dir), file)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return ^uint64(0), nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, &Error{Path: t.Dir(dir + "/" + file), Err: err}
	}
	return n, nil
}

func (t *Tree) procs(dir string) ([]int, error) {
	b, err := readFile(t.Dir(dir), "cgroup.procs")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// agentLeaves lists the leaves under agents/.
func (t *Tree) agentLeaves() []string {
	entries, _ := os.ReadDir(t.Dir(AgentsDir))
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// refresh samples every process in the workload, so a victim can be named with what it was
// just before it died. Processes that vanished since the last sample are kept for a few
// seconds: the OOM kill that took them may be reported a moment later.
func (w *watcher) refresh() {
	now := w.clock.Now()
	next := make(map[int]Victim, len(w.procs))
	add := func(dir, leaf string) {
		pids, _ := w.t.procs(dir)
		for _, pid := range pids {
			if start, dead := w.named[pid]; dead {
				if st, err := procstat.Read(pid); err == nil && st.StartTime == start {
					continue // the victim, still dying
				}
				delete(w.named, pid) // a new process with a reused pid
			}
			v, ok := w.procs[pid]
			if ok {
				// The name too: a tool renames itself after exec (prctl PR_SET_NAME; Claude
				// Code's bundled rg shows up as its version, 2.1.205), so the first look may
				// have seen its launcher's name.
				// A process that has begun to exit reads 0 (exit_mm drops its mm first): the
				// size it died with is the last one seen alive.
				if r := rss(pid); r > 0 {
					v.RSS = r
				}
				v.Comm = comm(pid, v.Comm)
			} else if v, ok = describe(pid); !ok {
				continue
			}
			v.Leaf = leaf
			next[pid] = v
		}
	}
	add(ServerDir, "server")
	for _, leaf := range w.t.agentLeaves() {
		add(AgentsDir+"/"+leaf, leaf)
	}
	for pid, v := range w.procs {
		if _, ok := next[pid]; !ok {
			w.gone[pid] = goneProc{v, now}
		}
	}
	for pid, g := range w.gone {
		if now.Sub(g.at) > 5*time.Second {
			delete(w.gone, pid)
		}
	}
	w.procs = next
}

// sample reads memory and pressure, decides on a pressure kill, and removes empty leaves.
func (w *watcher) sample(ctx context.Context, now time.Time) {
	s := PressureSample{At: now}
	okHigh, okStall := false, false
	if ev, err := w.t.memoryEvents(AgentsDir); err == nil {
		s.High, okHigh = ev.High, true
	}
	if b, err := readFile(w.t.Dir(AgentsDir), "memory.pressure"); err == nil {
		if some, _, err := ParsePressure(bytes.NewReader(b)); err == nil {
			s.StallUS, okStall = some.Total, true
		}
	}
	s.Current, _ = w.t.readUint(WorkloadDir, "memory.current")
	var errCur error
	s.AgentCurrent, errCur = w.t.readUint(AgentsDir, "memory.current")
	s.OK = okHigh && okStall && errCur == nil
	w.hist = append(w.hist, s)
	w.hot = w.nearLimits(s)
	w.pressureCheck(ctx, now)
	w.removeEmptyLeaves(ctx)
	if !w.hot {
		w.quiet++
		if w.quiet >= 5 {
			w.quiet = 0
			w.refresh()
		}
	}
}

// nearLimits: past half of memory.max or within 10% of memory.high, or over high in the last
// interval. Near a limit every process is sampled at PlaceInterval, so that the one the OOM
// killer takes can be named with its size at death.
func (w *watcher) nearLimits(s PressureSample) bool {
	l := w.cfg.Limits
	if n := len(w.hist); n >= 2 && w.hist[n-1].High > w.hist[n-2].High {
		return true
	}
	near := func(cur uint64, lim Size, share float64) bool {
		return lim.IsSet() && !lim.IsMax() && float64(cur) >= share*float64(lim.N())
	}
	return near(s.AgentCurrent, l.MemoryHigh, 0.9) || near(s.Current, l.MemoryMax, 0.5)
}
