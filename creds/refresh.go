package creds

import (
	"hash/fnv"
	"math/rand/v2"
	"time"
)

// Schedule says when a running supervisor re-reads the user's token from Vault. Every user's
// supervisor re-reads at the same interval but in its own slot within it: the instants whose
// Unix time modulo the interval is the user's offset, derived from the user name (FNV-1a). So a
// fleet restarted at once (a reboot, a package upgrade) does not ask Vault all in the same
// second, one user's slot is the same across restarts, and a fleet that comes back from a
// Vault outage together returns to its slots instead of staying in step: re-reading an interval
// after each success, as this did before, left a third of 200 supervisors re-reading in the same
// 5 s of every interval after one outage (bench/fleet, RELIABILITY.md).
type Schedule struct {
	Interval time.Duration
	Offset   time.Duration // in [0, Interval)
}

// NewSchedule returns the schedule of user; a zero or negative interval never re-reads.
func NewSchedule(user string, interval time.Duration) Schedule {
	if interval <= 0 {
		return Schedule{}
	}
	h := fnv.New64a()
	h.Write([]byte(user))
	return Schedule{Interval: interval, Offset: time.Duration(h.Sum64() % uint64(interval))}
}

// Enabled reports whether the schedule ever re-reads.
func (s Schedule) Enabled() bool { return s.Interval > 0 }

// Next is the user's first slot after now that is at least a tenth of the interval away: the
// re-read after a start or after a successful re-read at now (the token was just read).
func (s Schedule) Next(now time.Time) time.Time {
	i := int64(s.Interval)
	n := now.UnixNano()
	since := ((n-int64(s.Offset))%i + i) % i // since the user's last slot at or before now
	next := now.Add(time.Duration(i - since))
	if next.Sub(now) < s.Interval/10 {
		next = next.Add(s.Interval)
	}
	return next
}

// Backoff spaces re-reads while Vault fails: exponential from Base, capped at Cap, each wait
// drawn from [d/2, d] (jitter, so a fleet that lost Vault together does not come back in step).
type Backoff struct {
	Base, Cap time.Duration
	n         int
	rnd       func(int64) int64 // tests make it deterministic
}

// Next returns the wait before the next attempt and counts this failure.
func (b *Backoff) Next() time.Duration {
	d := b.Base << min(b.n, 30)
	if d <= 0 || d > b.Cap {
		d = b.Cap
	}
	b.n++
	r := b.rnd
	if r == nil {
		r = rand.Int64N
	}
	return d/2 + time.Duration(r(int64(d/2)+1))
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Failures is the number of failures since the last Reset.
func (b *Backoff) Failures() int { return b.n }
