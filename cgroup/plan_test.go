package cgroup

import (
	"strings"
	"testing"
)

func defaultLimits(t testing.TB) Limits {
	t.Helper()
	var l Limits
	for _, kv := range []struct {
		s *Size
		v string
	}{{&l.MemoryMax, "16G"}, {&l.MemoryHigh, "12G"}, {&l.ServerMemoryLow, "1G"}} {
		if err := kv.s.Set(kv.v); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func TestPlanOrderAndValues(t *testing.T) {
	steps := Plan(defaultLimits(t))
	var got []string
	for _, s := range steps {
		got = append(got, s.String())
	}
	want := []string{
		"mkdir supervisor",
		"move self to supervisor/cgroup.procs",
		"write cgroup.subtree_control = +memory +pids",
		"write supervisor/memory.max = 268435456",
		"mkdir workload",
		"write workload/cgroup.subtree_control = +memory +pids",
		"mkdir workload/server",
		"mkdir workload/agents",
		"write workload/agents/cgroup.subtree_control = +memory +pids",
		"write workload/memory.max = 17179869184",
		"write workload/memory.swap.max = 0",
		"write workload/memory.oom.group = 0",
		"write workload/agents/memory.oom.group = 0",
		"write workload/agents/memory.high = 12884901888",
		"write workload/server/memory.low = 1073741824",
		"setxattr workload/server user.oomd_avoid=1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The unit's own cgroup belongs to systemd: the only file of it the plan may touch is
// cgroup.subtree_control (and cgroup.procs only through moving ourselves out of it).
func TestPlanNeverWritesTheUnitsAttributes(t *testing.T) {
	l := defaultLimits(t)
	l.PidsMax, l.AgentOOMGroup = 500, true
	l.AgentMemoryMax = Bytes(1 << 30)
	for _, s := range Plan(l) {
		if s.Dir == "." && !(s.Op == OpWrite && s.File == "cgroup.subtree_control") {
			t.Errorf("plan writes the unit's own cgroup: %s", s)
		}
		if s.Op == OpWrite && s.Value == "-1" {
			t.Errorf("plan writes -1, which the kernel rejects: %s", s)
		}
	}
}

func TestPlanOptionalLimits(t *testing.T) {
	l := defaultLimits(t)
	l.PidsMax = 4096
	l.MemoryMax = Max
	l.MemoryHigh = Max
	var s []string
	for _, st := range Plan(l) {
		s = append(s, st.String())
	}
	all := strings.Join(s, "\n")
	for _, want := range []string{"workload/agents/pids.max = 4096", "workload/memory.max = max", "agents/memory.high = max"} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in\n%s", want, all)
		}
	}
	if got := LeafSteps(l); len(got) != 0 {
		t.Errorf("leaf steps without per-agent options: %v", got)
	}
	l.AgentMemoryMax, l.AgentOOMGroup = Bytes(2<<30), true
	got := LeafSteps(l)
	if len(got) != 2 || got[0].String() != "write memory.max = 2147483648" || got[1].String() != "write memory.oom.group = 1" {
		t.Errorf("leaf steps %v", got)
	}
}

func TestLimitsValidate(t *testing.T) {
	ok := defaultLimits(t)
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Limits){
		"high above max":    func(l *Limits) { l.MemoryHigh = Bytes(20 << 30) },
		"high max, max 16G": func(l *Limits) { l.MemoryHigh = Max },
		"low at max":        func(l *Limits) { l.ServerMemoryLow = Bytes(16 << 30) },
		"agent above max":   func(l *Limits) { l.AgentMemoryMax = Bytes(17 << 30) },
		"tiny max":          func(l *Limits) { l.MemoryMax = Bytes(1000); l.MemoryHigh = Bytes(10) },
		"negative pids":     func(l *Limits) { l.PidsMax = -1 },
		"unset memory.max":  func(l *Limits) { l.MemoryMax = Size{} },
	} {
		l := ok
		mut(&l)
		if err := l.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
