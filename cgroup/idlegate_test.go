package cgroup

import (
	"testing"
	"time"
)

func TestIdleGate(t *testing.T) {
	type step struct {
		at      time.Duration
		busy    bool
		young   int
		want    bool
		idleFor time.Duration
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"idle from the first reading", []step{
			{at: 0, want: false, idleFor: 0},
			{at: 59 * time.Second, want: false, idleFor: 59 * time.Second},
			{at: time.Minute, want: true, idleFor: time.Minute},
		}},
		{"a busy reading restarts the clock", []step{
			{at: 0, busy: true, want: false, idleFor: 0},
			{at: 30 * time.Second, want: false, idleFor: 0},
			{at: 80 * time.Second, busy: true, want: false, idleFor: 0},
			{at: 90 * time.Second, want: false, idleFor: 0},
			{at: 149 * time.Second, want: false, idleFor: 59 * time.Second},
			{at: 150 * time.Second, want: true, idleFor: time.Minute},
		}},
		{"a young leaf holds the answer back without restarting the clock", []step{
			{at: 0, want: false},
			{at: 50 * time.Second, young: 1, want: false, idleFor: 50 * time.Second},
			{at: 65 * time.Second, young: 2, want: false, idleFor: 65 * time.Second},
			{at: 70 * time.Second, want: true, idleFor: 70 * time.Second},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := IdleGate{Need: time.Minute}
			t0 := time.Unix(1_000_000, 0)
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				if got := g.Idle(now, Verdict{Busy: s.busy, Young: s.young}); got != s.want {
					t.Fatalf("step %d (at %v, busy %v, young %d): idle %v, want %v", i, s.at, s.busy, s.young, got, s.want)
				}
				if got := g.IdleFor(now); got != s.idleFor {
					t.Fatalf("step %d (at %v): idle for %v, want %v", i, s.at, got, s.idleFor)
				}
			}
		})
	}
	var never IdleGate
	if d := never.IdleFor(time.Unix(1, 0)); d != 0 {
		t.Errorf("a gate with no reading: idle for %v, want 0", d)
	}
}
