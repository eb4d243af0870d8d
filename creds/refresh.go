package creds

import (
	"hash/fnv"
	"math/rand/v2"
	"time"
)

// Schedule says when a running supervisor re-reads the user's token from Vault. Every user's
// supervisor re-reads at the same interval but at its own offset within it, derived from the
// user name (FNV-1a): a fleet restarted at once (a reboot, a package upgrade) does not ask Vault
// all in the same second, and one user's offset is the same across restarts.
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

// First is the first re-read after a start at start: at the user's offset, and never sooner
// than a tenth of the interval (the start itself just read the token).
func (s Schedule) First(start time.Time) time.Time {
	d := s.Offset
	if min := s.Interval / 10; d < min {
		d += s.Interval
	}
	return start.Add(d)
}

// Next is the re-read after one at last.
func (s Schedule) Next(last time.Time) time.Time { return last.Add(s.Interval) }

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
