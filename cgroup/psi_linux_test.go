//go:build linux

package cgroup

import (
	"testing"
	"time"
)

// The sample pace in trigger mode: full pace while there is a reason to look (near a limit, a
// kill pending, the trigger fired lately), the idle pace otherwise; sampling mode never changes.
func TestPSIPace(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	cfg := WatchConfig{SampleInterval: time.Second, PressureWindow: 10 * time.Second}
	idle := IdleSampleInterval(time.Second)
	for _, tc := range []struct {
		name  string
		psi   bool
		hot   bool
		kill  bool
		since time.Duration // since the trigger last fired
		want  time.Duration
	}{
		{"idle", true, false, false, time.Minute, idle},
		{"near a limit", true, true, false, time.Minute, time.Second},
		{"a kill pending", true, false, true, time.Minute, time.Second},
		{"the trigger fired lately", true, false, false, 15 * time.Second, time.Second},
		{"the trigger fired two windows ago", true, false, false, 21 * time.Second, idle},
		{"sampling mode", false, false, false, time.Minute, time.Second},
	} {
		w := &watcher{cfg: cfg, hot: tc.hot, kills: map[int]*pendingKill{}}
		if tc.kill {
			w.kills[1] = &pendingKill{}
		}
		if tc.psi {
			w.psi = &psiTrigger{woke: t0, interval: time.Second}
		}
		tick := wallClock{}.NewTicker(time.Second)
		w.pace(tick, t0.Add(tc.since))
		tick.Stop()
		got := time.Second
		if w.psi != nil {
			got = w.psi.interval
		}
		if got != tc.want {
			t.Errorf("%s: pace %v, want %v", tc.name, got, tc.want)
		}
	}
}
