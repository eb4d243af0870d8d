//go:build linux

package cgroup

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"t3-supervise/internal/procstat"
)

// The pressure kill: the signals, through pidfds, and their escalation.

type pendingKill struct {
	victim    Victim
	pidfd     int
	signalled time.Time // SIGTERM, on the watch's clock
	escalated bool
	stall     float64
}

// policy is the pressure policy of the watch's configuration (pressure.go).
func (w *watcher) policy() PressurePolicy {
	p := PressurePolicy{Window: w.cfg.PressureWindow, MinStall: w.cfg.PressureStall, Grace: w.cfg.KillGrace}
	if h := w.cfg.Limits.MemoryHigh; h.IsSet() && !h.IsMax() {
		p.High = uint64(h.N())
	}
	return p
}

// pressureCheck asks the policy about the samples so far and, on its word, sends SIGTERM to the
// victim it chooses. One pressure kill at a time: while one is pending (checkKills), none other.
// now is the time of the sample tick.
func (w *watcher) pressureCheck(ctx context.Context, now time.Time) {
	p := w.policy()
	d := p.Decide(w.hist)
	w.hist = w.hist[d.Keep:]
	if !d.Kill || len(w.kills) > 0 {
		return
	}
	w.refresh()
	victim, choice := p.Choose(w.candidates())
	if choice == NoVictim {
		return
	}
	w.hist = w.hist[len(w.hist)-1:] // a new window after each kill (or one already under way)
	if choice == AlreadyDying {
		return
	}
	fd, err := unix.PidfdOpen(victim.PID, 0)
	if err != nil {
		return // gone already
	}
	// The pidfd pins the process; check it is still the one sampled (pid reuse) before signalling.
	if st, err := procstat.Read(victim.PID); err != nil || st.StartTime != victim.start {
		unix.Close(fd)
		return
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGTERM, nil, 0); err != nil {
		unix.Close(fd)
		w.warn(ctx, fmt.Errorf("pressure kill of pid %d: %w", victim.PID, err))
		return
	}
	w.kills[victim.PID] = &pendingKill{victim: victim, pidfd: fd, signalled: now, stall: d.Stall}
}

// candidates are the processes of the last sample, each with whether it is dying already. Read
// only when the policy wants a kill: one stat and one status file per process.
func (w *watcher) candidates() []Candidate {
	cands := make([]Candidate, 0, len(w.procs))
	for pid, v := range w.procs {
		st, err := procstat.Read(pid)
		dying := err == nil && st.StartTime == v.start && (st.Dying() || sigkillPending(pid))
		cands = append(cands, Candidate{Victim: v, Dying: dying})
	}
	return cands
}

// checkKills reports pressure kills whose victim exited, and escalates to SIGKILL (or, with
// AgentOOMGroup, to cgroup.kill of the victim's leaf) after the grace period. now is the time of
// the place tick.
func (w *watcher) checkKills(ctx context.Context, now time.Time) {
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
		if !k.escalated && w.policy().Escalate(k.signalled, now) {
			k.escalated = true
			var err error
			if w.cfg.Limits.AgentOOMGroup && k.victim.Leaf != "" {
				err = writeFile(w.t.Dir(AgentsDir+"/"+k.victim.Leaf), "cgroup.kill", "1")
			} else {
				err = unix.PidfdSendSignal(k.pidfd, unix.SIGKILL, nil, 0)
			}
			if err != nil {
				w.warn(ctx, fmt.Errorf("pressure kill of pid %d: SIGKILL: %w", pid, err))
			} else {
				w.releaseMemory(ctx, k.pidfd, k.victim, "pressure_kill")
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
