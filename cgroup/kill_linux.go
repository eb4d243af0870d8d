//go:build linux

package cgroup

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// The pressure kill: the signals, through pidfds, and their escalation.

type pendingKill struct {
	victim    Victim
	pidfd     int
	deadline  time.Time
	escalated bool
	stall     float64
}

// pressureCheck kills the largest agent process when, for the whole window, agents/ stayed
// over memory.high, its "high" counter moved, and it was stalled on memory (PSI "some") for at
// least PressureStall of the wall time. Without swap, memory.high below memory.max can throttle
// a runaway for minutes with no OOM kill at all (the 2026-07-02 livelock, and seen in the VM
// tier: the throttled balloon crawls a few MiB per second at 100% stall); this ends it before
// the machine suffers. The high counter moves in bursts (a throttled task sleeps up to 2 s per
// allocation, mm/memcontrol.c MEMCG_MAX_OVERAGE), so it is asked to move over the window, not
// in every interval; memory.current over memory.high is what must hold throughout.
func (w *watcher) pressureCheck(ctx context.Context) {
	win := w.cfg.PressureWindow
	high := w.cfg.Limits.MemoryHigh
	if win <= 0 || !high.IsSet() || high.IsMax() || len(w.hist) < 2 {
		w.trimHistory()
		return
	}
	first, stall, kill := pressureDecision(w.hist, win, uint64(high.N()), w.cfg.PressureStall)
	w.hist = w.hist[first:]
	// Incomplete samples never make a window (no PSI at all, say): keep at most two windows.
	for len(w.hist) > 2 && w.hist[len(w.hist)-1].at.Sub(w.hist[0].at) > 2*win {
		w.hist = w.hist[1:]
	}
	if !kill || len(w.kills) > 0 {
		return
	}
	w.refresh()
	var victim Victim
	for _, v := range w.procs {
		if v.Leaf != "server" && v.RSS > victim.RSS {
			victim = v
		}
	}
	if victim.PID == 0 {
		return
	}
	w.hist = w.hist[len(w.hist)-1:] // a new window after each kill
	fd, err := unix.PidfdOpen(victim.PID, 0)
	if err != nil {
		return // gone already
	}
	// The pidfd pins the process; check it is still the one sampled (pid reuse) before signalling.
	if st, err := readProcStat(victim.PID); err != nil || st.Start != victim.start {
		unix.Close(fd)
		return
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGTERM, nil, 0); err != nil {
		unix.Close(fd)
		w.warn(ctx, fmt.Errorf("pressure kill of pid %d: %w", victim.PID, err))
		return
	}
	w.kills[victim.PID] = &pendingKill{victim: victim, pidfd: fd, deadline: time.Now().Add(w.cfg.KillGrace), stall: stall}
}

// pressureDecision is the pure half of pressureCheck: over hist (oldest first, the newest last),
// is there a whole window of sustained pressure? first is how much of hist to drop (the samples
// older than the oldest one that still covers the window). Only complete samples are evidence:
// the window runs from the newest complete sample back to the newest complete one at least win
// older, and an incomplete sample in between neither proves nor breaks it. A counter that went
// backwards (a cgroup recreated under the same name) is no stall either.
func pressureDecision(hist []sample, win time.Duration, high uint64, minStall float64) (first int, stall float64, kill bool) {
	lastI := -1
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].ok {
			lastI = i
			break
		}
	}
	if lastI < 0 {
		return 0, 0, false
	}
	last := hist[lastI]
	first = -1
	for i := lastI; i >= 0; i-- {
		if hist[i].ok && last.at.Sub(hist[i].at) >= win {
			first = i
			break
		}
	}
	if first < 0 {
		return 0, 0, false // not yet a whole window of samples
	}
	for _, s := range hist[first : lastI+1] {
		if s.ok && s.agentCur < high {
			return first, 0, false // dipped under memory.high: not sustained
		}
	}
	base := hist[first]
	if last.high <= base.high || last.stallUS < base.stallUS {
		return first, 0, false
	}
	elapsed := last.at.Sub(base.at)
	stall = float64(last.stallUS-base.stallUS) / float64(elapsed.Microseconds())
	return first, stall, stall >= minStall
}

// checkKills reports pressure kills whose victim exited, and escalates to SIGKILL (or, with
// AgentOOMGroup, to cgroup.kill of the victim's leaf) after the grace period.
func (w *watcher) checkKills(ctx context.Context) {
	for pid, k := range w.kills {
		if exited(k.pidfd) {
			sig := "SIGTERM"
			if k.escalated {
				sig = "SIGKILL"
			}
			unix.Close(k.pidfd)
			delete(w.kills, pid)
			delete(w.procs, pid)
			w.emit(ctx, PressureKill{Victim: k.victim, Signal: sig, Stall: k.stall, Window: w.cfg.PressureWindow})
			continue
		}
		if !k.escalated && time.Now().After(k.deadline) {
			k.escalated = true
			var err error
			if w.cfg.Limits.AgentOOMGroup && k.victim.Leaf != "" {
				err = writeFile(w.t.Dir(AgentsDir+"/"+k.victim.Leaf), "cgroup.kill", "1")
			} else {
				err = unix.PidfdSendSignal(k.pidfd, unix.SIGKILL, nil, 0)
			}
			if err != nil {
				w.warn(ctx, fmt.Errorf("pressure kill of pid %d: SIGKILL: %w", pid, err))
			}
		}
	}
}

// exited polls a pidfd: it becomes readable when the process exits (pidfd_open(2)).
func exited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

func (w *watcher) closeKills() {
	for _, k := range w.kills {
		unix.Close(k.pidfd)
	}
}
