package cgroup

import (
	"cmp"
	"time"
)

// The pressure kill's decisions, pure: no file is read, no clock is asked, no signal is sent.
// The watch reads samples (sample_linux.go), asks PressurePolicy, and signals what it says
// (kill_linux.go); the same split as systemd-oomd's readings, oomd_pressure_above and the
// compare_* victim orderings (src/oom/oomd-util.c). To change the policy, change this file;
// its table is pressure_test.go.

// PressureSample is one sample of what the pressure decision reads. At is the time of the
// watch's clock when it was taken (the tick's), not the time of any read.
type PressureSample struct {
	At           time.Time
	High         uint64 // agents/memory.events high
	StallUS      uint64 // agents/memory.pressure "some" total, microseconds
	Current      uint64 // workload/memory.current
	AgentCurrent uint64 // agents/memory.current
	// OK: every reading of the decision (High, StallUS, AgentCurrent) succeeded. A failed read
	// leaves a zero, which is no reading: a window that began or ended on one made the stall a
	// difference against 0, or an unsigned wrap-around (a huge "stall", and a kill).
	OK bool
}

// PressurePolicy kills the largest agent process when, for a whole Window, agents/ stayed over
// memory.high, its "high" counter moved, and it was stalled on memory (PSI "some") for at least
// MinStall of the wall time. Without swap, memory.high below memory.max can throttle a runaway
// for minutes with no OOM kill at all (the 2026-07-02 livelock, and seen in the VM tier: the
// throttled balloon crawls a few MiB per second at 100% stall); this ends it before the machine
// suffers. The high counter moves in bursts (a throttled task sleeps up to 2 s per allocation,
// mm/memcontrol.c MEMCG_MAX_OVERAGE), so it is asked to move over the window, not in every
// interval; memory.current over memory.high is what must hold throughout.
type PressurePolicy struct {
	Window   time.Duration // 0: no pressure kill
	MinStall float64       // share of the window's wall time, 0..1
	High     uint64        // agents/memory.high in bytes; 0 (unset or "max"): no pressure kill
	Grace    time.Duration // from SIGTERM to SIGKILL
}

// Enabled: the policy can ever kill.
func (p PressurePolicy) Enabled() bool { return p.Window > 0 && p.High > 0 }

// PressureDecision is what Decide says about a history of samples.
type PressureDecision struct {
	Kill  bool    // a whole window of sustained pressure ends at the newest complete sample
	Stall float64 // the window's stalled share of wall time (when Kill)
	// Keep is where the history the caller should keep begins: hist[Keep:]. Older samples no
	// longer cover a window; incomplete ones never make one (no PSI at all, say), so at most two
	// windows are kept, and with the policy disabled only the last two samples (nearLimits
	// compares the last two high counters).
	Keep int
}

// Decide looks at hist (oldest first, the newest last). Only complete samples are evidence: the
// window runs from the newest complete sample back to the newest complete one at least Window
// older, and an incomplete sample in between neither proves nor breaks it. A counter that went
// backwards (a cgroup recreated under the same name) is no stall either.
func (p PressurePolicy) Decide(hist []PressureSample) PressureDecision {
	if !p.Enabled() || len(hist) < 2 {
		return PressureDecision{Keep: max(0, len(hist)-2)}
	}
	d := p.window(hist)
	for len(hist)-d.Keep > 2 && hist[len(hist)-1].At.Sub(hist[d.Keep].At) > 2*p.Window {
		d.Keep++
	}
	return d
}

func (p PressurePolicy) window(hist []PressureSample) PressureDecision {
	lastI := -1
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].OK {
			lastI = i
			break
		}
	}
	if lastI < 0 {
		return PressureDecision{}
	}
	last := hist[lastI]
	first := -1
	for i := lastI; i >= 0; i-- {
		if hist[i].OK && last.At.Sub(hist[i].At) >= p.Window {
			first = i
			break
		}
	}
	if first < 0 {
		return PressureDecision{} // not yet a whole window of samples
	}
	for _, s := range hist[first : lastI+1] {
		if s.OK && s.AgentCurrent < p.High {
			return PressureDecision{Keep: first} // dipped under memory.high: not sustained
		}
	}
	base := hist[first]
	if last.High <= base.High || last.StallUS < base.StallUS {
		return PressureDecision{Keep: first}
	}
	elapsed := last.At.Sub(base.At)
	stall := float64(last.StallUS-base.StallUS) / float64(elapsed.Microseconds())
	return PressureDecision{Kill: stall >= p.MinStall, Stall: stall, Keep: first}
}

// Candidate is a workload process the policy may pick as the victim of a pressure kill.
type Candidate struct {
	Victim Victim
	// Dying: it has begun to exit (PF_EXITING, a zombie) or carries a pending SIGKILL, from the
	// OOM killer or from anyone. Its memory is on its way back.
	Dying bool
}

// VictimChoice is what Choose says.
type VictimChoice int

const (
	NoVictim     VictimChoice = iota // no agent process at all
	KillIt                           // signal Victim
	AlreadyDying                     // the largest is dying already: no second kill; a new window begins
)

// Choose picks the victim of a pressure kill among cands: the largest agent process by RSS
// (server/'s processes are never picked, nor one whose size was never read). Ties go to the younger process (the later start
// time: the one that began most recently, likely the runaway, and the older has more work to
// lose), then to the higher pid, so that the choice never depends on the order cands come in.
// When the process it would pick is dying already, it picks none: killing the next largest
// would be a second kill for one episode of pressure, and the dying one's memory is coming back.
// A process signalled by an earlier pressure kill is the caller's: while one is pending, the
// caller does not ask.
func (PressurePolicy) Choose(cands []Candidate) (Victim, VictimChoice) {
	var best *Candidate
	for i := range cands {
		c := &cands[i]
		if c.Victim.Leaf == "server" || c.Victim.PID <= 0 || c.Victim.RSS == 0 {
			continue
		}
		if best == nil || cmp.Or(
			cmp.Compare(c.Victim.RSS, best.Victim.RSS),
			cmp.Compare(c.Victim.start, best.Victim.start),
			cmp.Compare(c.Victim.PID, best.Victim.PID)) > 0 {
			best = c
		}
	}
	switch {
	case best == nil:
		return Victim{}, NoVictim
	case best.Dying:
		return best.Victim, AlreadyDying
	}
	return best.Victim, KillIt
}

// Escalate: a victim that got SIGTERM at signalled and is still alive at now gets SIGKILL.
func (p PressurePolicy) Escalate(signalled, now time.Time) bool {
	return now.After(signalled.Add(p.Grace))
}
