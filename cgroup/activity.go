package cgroup

import (
	"slices"
	"time"
)

// Busy and idle, by activity rather than presence. T3 keeps one claude child per open provider
// session, idle ones included, and every 5 minutes runs an account probe (`claude --version`,
// then a throwaway SDK session given up after 8 s) in leaves of their own: "an agent leaf holds
// a process" would make every user with an open session busy for ever, and the probe would
// reset any idle clock. So the agents are busy when one leaf that has lived for at least
// MinAge used more than CPU of processor time in the last Window: an open session waiting for
// its next prompt uses a few milliseconds a second, a probe's leaves are gone within seconds,
// a turn that runs tools uses far more. The numbers behind DefaultActivity are in
// RELIABILITY.md ("Busy and idle").
//
// The readings (cpu.stat of each leaf, Tree.AgentCPU) are the mechanism; Judge is the policy,
// a pure function of the samples.

// ActivityPolicy says when the agents count as busy.
type ActivityPolicy struct {
	// Window is how far back CPU use counts.
	Window time.Duration
	// CPU is the processor time one leaf must use within Window, more than which it is active.
	CPU time.Duration
	// MinAge is how long a leaf must have been seen before its CPU counts: shorter-lived leaves
	// (the account probe's) never count, however hard they work.
	MinAge time.Duration
}

// DefaultActivity is the policy the supervisor runs with. Measured with Claude Code 2.1.328
// (RELIABILITY.md, section 10): an open session between turns used 1.7-2.8 ms of CPU a second,
// but up to 17 ms/s in the half minute after a turn: at most 0.51 s in any minute seen; a Bash
// tool at work (a tenth of a core) made its leaf use 3.3-6.2 s a minute; a turn whose tool ran
// `echo` used 0.27 s; the probe's two leaves (12-19 ms and 0.6-0.8 s of CPU) lived about a
// second, and its SDK session is given up after 8 s at most. 1 s a minute is twice the worst
// idle minute and a third of the least working one.
var DefaultActivity = ActivityPolicy{Window: time.Minute, CPU: time.Second, MinAge: 30 * time.Second}

// LeafCPU is one agent leaf's cumulative CPU time (cpu.stat usage_usec).
type LeafCPU struct {
	Leaf  string
	Usage time.Duration
}

// CPUSample is one reading of every agent leaf at one time.
type CPUSample struct {
	At     time.Time
	Leaves []LeafCPU
}

// LeafActivity is how one leaf was judged.
type LeafActivity struct {
	Leaf string
	// CPU is the processor time the leaf used in the window (all of it, if the leaf was first
	// seen within the window).
	CPU time.Duration
	// Age is how long the leaf has been seen: at most its real age, by up to one sample interval.
	Age time.Duration
	// Young: seen for less than MinAge, so not counted (a probe, or a session just opened).
	Young bool
	// Active: not young, and CPU above the policy's.
	Active bool
}

// Verdict is the judgement of a history of samples.
type Verdict struct {
	At     time.Time // the last sample's time
	Busy   bool      // some leaf is active
	Young  int       // leaves not counted yet for their age
	Leaves []LeafActivity
}

// Judge decides from hist, samples in time order, as of the last one: which leaves in it are
// active, and so whether the agents are busy. Only leaves present in the last sample count: a
// leaf that is gone has nothing left to lose.
func Judge(p ActivityPolicy, hist []CPUSample) Verdict {
	if len(hist) == 0 {
		return Verdict{}
	}
	last := hist[len(hist)-1]
	v := Verdict{At: last.At, Leaves: []LeafActivity{}}
	// The base of the window: the last sample at or before its start.
	base := -1
	for i := len(hist) - 1; i >= 0; i-- {
		if !hist[i].At.After(last.At.Add(-p.Window)) {
			base = i
			break
		}
	}
	for _, l := range last.Leaves {
		a := LeafActivity{Leaf: l.Leaf}
		for _, s := range hist {
			if usage(s, l.Leaf) >= 0 {
				a.Age = last.At.Sub(s.At)
				break
			}
		}
		var from time.Duration // a leaf first seen within the window: all its use is recent
		if base >= 0 {
			from = max(usage(hist[base], l.Leaf), 0)
		}
		a.CPU = l.Usage - from
		if a.CPU < 0 { // a counter that went back (a process tree read from /proc lost a child)
			a.CPU = l.Usage
		}
		a.Young = a.Age < p.MinAge
		a.Active = !a.Young && a.CPU > p.CPU
		if a.Young {
			v.Young++
		}
		v.Busy = v.Busy || a.Active
		v.Leaves = append(v.Leaves, a)
	}
	return v
}

// usage is leaf's usage in s, or -1 when s does not have it.
func usage(s CPUSample, leaf string) time.Duration {
	i := slices.IndexFunc(s.Leaves, func(l LeafCPU) bool { return l.Leaf == leaf })
	if i < 0 {
		return -1
	}
	return s.Leaves[i].Usage
}

// Activity keeps the samples Judge needs and no more: those of the last max(Window, MinAge),
// and the one before them.
type Activity struct {
	Policy ActivityPolicy
	hist   []CPUSample
}

// Add records a sample (samples come in time order) and forgets those no longer needed.
func (a *Activity) Add(s CPUSample) {
	a.hist = append(a.hist, s)
	keep := max(a.Policy.Window, a.Policy.MinAge)
	for len(a.hist) > 1 && !a.hist[1].At.After(s.At.Add(-keep)) {
		a.hist = a.hist[1:]
	}
}

// Verdict judges the samples kept.
func (a *Activity) Verdict() Verdict { return Judge(a.Policy, a.hist) }
