//go:build linux

package cgroup

import (
	"context"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"t3-supervise/internal/procstat"
)

// The kernel's OOM kills: noticing them (inotify on memory.events) and naming their victims.

// The inotify watch on memory.events that wakes onMemoryEvents is the watch's one instance
// (notify_linux.go).

// onMemoryEvents runs when memory.events of workload/ or agents/ changed.
func (w *watcher) onMemoryEvents(ctx context.Context) {
	w.hot = true
	seen := monotonic()
	ev, err := w.t.memoryEvents(WorkloadDir)
	if err != nil {
		w.warn(ctx, err)
		return
	}
	if ev.OOMKill <= w.oom {
		return
	}
	n := ev.OOMKill - w.oom
	w.oom = ev.OOMKill
	victims := w.findVictims(int(n))
	for _, v := range victims {
		if k, ok := w.kills[v.PID]; ok { // the kernel was faster than our pressure kill
			unix.Close(k.pidfd)
			delete(w.kills, v.PID)
		}
		w.emit(ctx, OOMKill{Victim: v, Known: true, Count: ev.OOMKill, Seen: seen})
		w.releaseVictim(ctx, v)
	}
	for i := len(victims); i < int(n); i++ {
		w.emit(ctx, OOMKill{Victim: Victim{Leaf: w.leafOfKill()}, Count: ev.OOMKill, Seen: seen})
	}
	if len(victims) > 0 {
		w.leafOfKill() // keep the per-leaf counters current
	}
	w.refresh()
}

// findVictims names up to n processes the OOM killer just took: those of the last sample that
// are gone now, dying, or carry a pending SIGKILL, largest first (the OOM killer picks by size, and
// memory.oom.group=0 means one process per kill).
func (w *watcher) findVictims(n int) []Victim {
	var cands []Victim
	for _, g := range w.gone {
		if !w.wasNamed(g.v) {
			cands = append(cands, g.v)
		}
	}
	for pid, v := range w.procs {
		if w.wasNamed(v) {
			continue
		}
		st, err := procstat.Read(pid)
		if err != nil || st.StartTime != v.start || st.Dying() || sigkillPending(pid) {
			cands = append(cands, v)
		}
	}
	// A victim born after the last sample: still in its leaf, dying or with SIGKILL pending.
	for _, leaf := range w.t.agentLeaves() {
		pids, _ := w.t.procs(AgentsDir + "/" + leaf)
		for _, pid := range pids {
			if _, known := w.procs[pid]; known {
				continue
			}
			if st, err := procstat.Read(pid); err != nil || !st.Dying() && !sigkillPending(pid) {
				continue
			}
			if _, dead := w.named[pid]; dead {
				continue
			}
			if v, ok := describe(pid); ok {
				v.Leaf = leaf
				cands = append(cands, v)
			}
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].RSS > cands[j].RSS })
	if len(cands) > n {
		cands = cands[:n]
	}
	for _, v := range cands {
		delete(w.procs, v.PID)
		delete(w.gone, v.PID)
		w.named[v.PID] = v.start
	}
	// Forget victims that are gone for good (their pid may be reused).
	for pid, start := range w.named {
		if st, err := procstat.Read(pid); err != nil || st.StartTime != start {
			delete(w.named, pid)
		}
	}
	return cands
}

func (w *watcher) wasNamed(v Victim) bool {
	start, ok := w.named[v.PID]
	return ok && start == v.start
}

// leafOfKill names the agent leaf whose own oom_kill counter moved since the last look, for an
// OOM kill whose victim could not be identified (it was born and died between two samples).
func (w *watcher) leafOfKill() string {
	found := ""
	for _, leaf := range w.t.agentLeaves() {
		ev, err := w.t.memoryEvents(AgentsDir + "/" + leaf)
		if err != nil {
			continue
		}
		if ev.OOMKill > w.leafOOM[leaf] && found == "" {
			found = leaf
		}
		w.leafOOM[leaf] = ev.OOMKill
	}
	return found
}

// monotonic reads CLOCK_MONOTONIC, the clock of the kernel's and journald's timestamps.
func monotonic() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
