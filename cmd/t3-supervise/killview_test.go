//go:build linux

package main

import (
	"testing"

	"t3-supervise/cgroup"
)

// The kill log names each kill by its journal kind (cgroup.Kill.Kind): the two spellings must
// stay one.
func TestKillViewKindsAreTheJournals(t *testing.T) {
	for _, c := range []struct {
		cg cgroup.KillEvent
		ev event
	}{
		{cgroup.OOMKill{}, OOMKillEvent{}},
		{cgroup.PressureKill{}, PressureKillEvent{}},
		{cgroup.StrayKilled{}, StrayKilledEvent{}},
	} {
		k, ok := kindOf(c.ev)
		if got := c.cg.Kill().Kind; !ok || got != k.Name {
			t.Errorf("%T: kill kind %q, journal kind %q", c.cg, got, k.Name)
		}
	}
}
