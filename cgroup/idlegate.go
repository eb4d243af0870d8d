package cgroup

import "time"

// IdleGate is the one definition of an idle user, shared by --restart-on-rotation=when-idle and
// the move to an upgraded binary: the agents have been idle (no active leaf, by Judge and the
// ActivityPolicy) for Need, and no leaf is too young to judge. It lives next to Judge because it
// is the same judgement carried over time: Judge says whether the agents are busy as of one
// history of samples, the gate since when they have not been. It takes one verdict at a time,
// each with its time, so that a table test drives it with its own clock.
type IdleGate struct {
	Need time.Duration
	from time.Time // since when the agents are idle; zero while busy or before the first reading
}

// Idle takes a verdict and says whether the user has now been idle for at least Need. The idle
// time counts from the first idle verdict: a gate fed from the start of the run knows how long
// the user has been idle before a question came up. A busy verdict restarts the clock; a young
// leaf (T3's account probe, or a session just opened) holds the answer back while it lasts but
// does not restart the clock: the probe comes every 5 minutes, as long as the default
// --rotation-idle, and would otherwise keep the clock from ever running out.
func (g *IdleGate) Idle(now time.Time, act Verdict) bool {
	if act.Busy {
		g.from = time.Time{}
		return false
	}
	if g.from.IsZero() {
		g.from = now
	}
	return act.Young == 0 && now.Sub(g.from) >= g.Need
}

// IdleFor is how long the user has been idle as of now (0 while busy or before any reading).
func (g *IdleGate) IdleFor(now time.Time) time.Duration {
	if g.from.IsZero() {
		return 0
	}
	return now.Sub(g.from)
}
