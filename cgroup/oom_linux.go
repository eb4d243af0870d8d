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

// oomHold is how long an OOM kill whose victim cannot be named at once waits for the next looks
// (each place tick, each memory event) before it is reported unnamed. The kernel raises the
// oom_kill event before it signals the victim (mm/oom_kill.c, __oom_kill_process: "Raise event
// before sending signal: task reaper must see this", then do_send_sig_info(SIGKILL)), and it
// counts the leaf, agents/ and workload/ in turn (mm/memcontrol.c, memcg_memory_event), waking
// the watch through agents/' notification before it counts workload/'s: a look that reads the
// moved counter can find the victim still alive, with no SIGKILL pending, and reported the kill
// without a victim (the likeliest cause of the VM soak's unnamed kills, about one in 100-1000
// balloons; a soak of 300 after this change needed no later look). A place tick later the
// victim is dying or gone. Two seconds is twenty place ticks, room for a guest whose CPU the host took
// away for a while; the expiry comes after a look's naming, so even a late loop looks once more.
const oomHold = 2 * time.Second

// heldKill is an OOM kill the watch counted but has not reported yet: no victim was found.
type heldKill struct {
	count uint64        // workload memory.events oom_kill after this kill
	seen  time.Duration // CLOCK_MONOTONIC when the moved counter was read
	at    time.Time     // the watch's clock then
	leaf  string        // the agent leaf whose own counter moved, for an unnamed report
}

// onMemoryEvents runs when memory.events of workload/ or agents/ changed.
func (w *watcher) onMemoryEvents(ctx context.Context) {
	w.hot = true
	seen := monotonic()
	ev, err := w.t.memoryEvents(WorkloadDir)
	if err != nil {
		w.warn(ctx, err)
		return
	}
	now := w.clock.Now()
	if ev.OOMKill <= w.oom {
		if ev.OOM > w.oomSeen {
			// The oom counter moves in mem_cgroup_oom before the OOM killer chooses (mm/memcontrol.c):
			// its victim is alive and in its leaf now, and is sampled so that it can be named even
			// if it is reaped before the watch reads the kill.
			w.oomSeen = ev.OOM
			w.refresh()
		}
		w.nameHeld(ctx, now)
		return
	}
	w.oomSeen = ev.OOM
	fresh := int(ev.OOMKill - w.oom)
	for c := w.oom + 1; c <= ev.OOMKill; c++ {
		w.held = append(w.held, heldKill{count: c, seen: seen, at: now})
	}
	w.oom = ev.OOMKill
	w.nameHeld(ctx, now)
	// The leaf, for a report without a victim, is read now: later kills move the leaves'
	// counters again. Victims are found oldest kill first, so the kills still held are the newest.
	if fresh > len(w.held) {
		fresh = len(w.held)
	}
	for i := len(w.held) - fresh; i < len(w.held); i++ {
		w.held[i].leaf = w.leafOfKill()
	}
	if fresh == 0 {
		w.leafOfKill() // keep the per-leaf counters current
	}
	// Every process as it is now, the victim among them if it has no SIGKILL yet: the next look
	// names it from this sample even once its parent has reaped it.
	w.refresh()
}

// nameHeld names the held kills' victims, oldest kill first, and reports the kills that found
// none within oomHold without one.
func (w *watcher) nameHeld(ctx context.Context, now time.Time) {
	if len(w.held) == 0 {
		return
	}
	for _, v := range w.findVictims(len(w.held)) {
		k := w.held[0]
		w.held = w.held[1:]
		if pk, ok := w.kills[v.PID]; ok { // the kernel was faster than our pressure kill
			unix.Close(pk.pidfd)
			delete(w.kills, v.PID)
		}
		w.emit(ctx, OOMKill{Victim: v, Known: true, Count: k.count, Seen: k.seen, Held: now.Sub(k.at)})
		w.releaseVictim(ctx, v)
	}
	for len(w.held) > 0 && now.Sub(w.held[0].at) >= oomHold {
		k := w.held[0]
		w.held = w.held[1:]
		w.emit(ctx, OOMKill{Victim: Victim{Leaf: k.leaf}, Count: k.count, Seen: k.seen, Held: now.Sub(k.at)})
	}
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
