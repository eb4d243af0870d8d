package cgroup

import "testing"

func TestDrift(t *testing.T) {
	const page = 4096
	mem := func(file, v string) Step { return write(WorkloadDir, file, v) }
	ctl := write(WorkloadDir, "cgroup.subtree_control", "+memory +pids")
	for _, c := range []struct {
		name string
		s    Step
		got  string
		want string // "" = in order
	}{
		{"max written over memory.max", mem("memory.max", "17179869184"), "max\n", "17179869184"},
		{"memory.max as planned", mem("memory.max", "17179869184"), "17179869184\n", ""},
		{"planned bytes read back in whole pages", mem("memory.max", "1000000001"), "999997440\n", ""},
		{"one page less is drift", mem("memory.max", "1000000001"), "999993344\n", "1000000001"},
		{"planned max stays max", mem("memory.high", "max"), "max\n", ""},
		{"a number where max was planned", mem("memory.high", "max"), "4096\n", "max"},
		{"swap opened", mem("memory.swap.max", "0"), "max\n", "0"},
		{"oom.group flipped", mem("memory.oom.group", "0"), "1\n", "0"},
		{"pids.max raised", write(AgentsDir, "pids.max", "4096"), "max\n", "4096"},
		{"pids.max is not rounded", write(AgentsDir, "pids.max", "4097"), "4096\n", "4097"},
		{"garbage", mem("memory.max", "17179869184"), "", "17179869184"},
		{"controllers all on", ctl, "memory pids\n", ""},
		{"more than planned is fine", ctl, "cpu memory pids\n", ""},
		{"memory taken out", ctl, "pids\n", "+memory"},
		{"everything taken out", ctl, "\n", "+memory +pids"},
	} {
		if got := Drift(c.s, c.got, page); got != c.want {
			t.Errorf("%s: Drift(%s, %q) = %q, want %q", c.name, c.s, c.got, got, c.want)
		}
	}
}

// Everything the plan writes is guarded, in plan order, and nothing else (no mkdir, no move,
// no xattr).
func TestGuardedIsThePlansWrites(t *testing.T) {
	l := defaultLimits(t)
	l.PidsMax = 100
	var got []string
	for _, s := range Guarded(Plan(l)) {
		got = append(got, s.String())
	}
	want := []string{
		"write cgroup.subtree_control = +memory +pids",
		"write supervisor/memory.max = 268435456",
		"write workload/cgroup.subtree_control = +memory +pids",
		"write workload/agents/cgroup.subtree_control = +memory +pids",
		"write workload/memory.max = 17179869184",
		"write workload/memory.swap.max = 0",
		"write workload/memory.oom.group = 0",
		"write workload/agents/memory.oom.group = 0",
		"write workload/agents/memory.high = 12884901888",
		"write workload/agents/pids.max = 100",
		"write workload/server/memory.low = 1073741824",
	}
	if len(got) != len(want) {
		t.Fatalf("Guarded = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Guarded[%d] = %q, want %q", i, got[i], want[i])
		}
	}
}
