package creds

import (
	"testing"
	"time"
)

func TestScheduleJitterIsPerUserAndStable(t *testing.T) {
	const interval = time.Hour
	offsets := map[time.Duration]bool{}
	for _, u := range []string{"alice", "bob", "carol", "dave", "emo", "frank", "grace", "heidi"} {
		s := NewSchedule(u, interval)
		if s != NewSchedule(u, interval) {
			t.Fatalf("%s: schedule not stable", u)
		}
		if s.Offset < 0 || s.Offset >= interval {
			t.Errorf("%s: offset %v outside [0, %v)", u, s.Offset, interval)
		}
		offsets[s.Offset] = true
		start := time.Unix(1_000_000, 0)
		first := s.Next(start)
		if d := first.Sub(start); d < interval/10 || d >= interval+interval/10 {
			t.Errorf("%s: first re-read after %v", u, d)
		}
		if s.Next(first).Sub(first) != interval {
			t.Errorf("%s: not periodic", u)
		}
	}
	if len(offsets) < 7 {
		t.Errorf("8 users share %d offsets: no spread", len(offsets))
	}
	if NewSchedule("alice", 0).Enabled() {
		t.Error("interval 0 re-reads")
	}
}

// A fleet that re-read at one instant (the seconds after Vault came back from an outage) must
// not stay in step: each user's next re-read is in its own slot, the same one as before.
func TestScheduleReturnsToTheSlotAfterAnyReRead(t *testing.T) {
	const interval = time.Minute
	for _, u := range []string{"alice", "bob", "carol", "t3f0a1b-042"} {
		s := NewSchedule(u, interval)
		for _, at := range []time.Time{time.Unix(1_000_000, 0), time.Unix(1_000_000, 1), time.Unix(1_000_017, 5e8), time.Unix(2_000_000, 0)} {
			next := s.Next(at)
			if got := time.Duration(next.UnixNano() % int64(interval)); got != s.Offset {
				t.Errorf("%s: re-read at %v, next at %v: in slot %v, want its own, %v", u, at, next, got, s.Offset)
			}
			if d := next.Sub(at); d < interval/10 || d >= interval+interval/10 {
				t.Errorf("%s: re-read at %v, next after %v", u, at, d)
			}
		}
	}
}

func TestBackoff(t *testing.T) {
	b := &Backoff{Base: time.Second, Cap: time.Minute, rnd: func(n int64) int64 { return n - 1 }} // the top of each range
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	for i, w := range want {
		if got := b.Next(); got != w {
			t.Errorf("attempt %d: %v, want %v", i, got, w)
		}
	}
	if b.Failures() != len(want) {
		t.Errorf("failures %d", b.Failures())
	}
	b.Reset()
	b.rnd = func(int64) int64 { return 0 } // the bottom: half
	if got := b.Next(); got != 500*time.Millisecond {
		t.Errorf("after reset: %v", got)
	}
	// Real jitter stays within [d/2, d].
	r := &Backoff{Base: time.Second, Cap: time.Minute}
	for i := 0; i < 1000; i++ {
		r.Reset()
		if d := r.Next(); d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("jittered wait %v outside [0.5s, 1s]", d)
		}
	}
}
