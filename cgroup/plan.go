package cgroup

import (
	"errors"
	"fmt"
	"path"
	"strconv"
)

// Names of the cgroups we create below the unit's cgroup.
const (
	SupervisorDir = "supervisor"
	WorkloadDir   = "workload"
	ServerDir     = "workload/server"
	AgentsDir     = "workload/agents"
)

// SupervisorMemoryMax is memory.max of supervisor/. The supervisor needs about 20 MiB; the
// limit is there for a process that moved itself in from the workload (police_linux.go), which
// the watch kills at its next look: until then it is held to this, not to the unit's MemoryMax.
const SupervisorMemoryMax = 256 << 20

// Controllers are the controllers the subtree needs: memory for the limits, pids for pids.max.
var Controllers = []string{"memory", "pids"}

// Limits are the memory and process limits of the workload.
type Limits struct {
	// MemoryMax is workload/memory.max: the user's whole budget, server and agents together.
	// Crossing it invokes the OOM killer inside the workload only.
	MemoryMax Size
	// MemoryHigh is agents/memory.high: above it the kernel throttles and reclaims the agents
	// (never the server, which is outside agents/), and the supervisor's pressure kill watches.
	MemoryHigh Size
	// ServerMemoryLow is server/memory.low: memory the server keeps under reclaim pressure.
	ServerMemoryLow Size
	// AgentMemoryMax, when set, is memory.max of every agent leaf: one agent cannot take the
	// whole budget.
	AgentMemoryMax Size
	// PidsMax, when > 0, is agents/pids.max: a fork bomb in an agent stops there. It is on
	// agents/, not on workload/, because pids.max counts tasks (threads too) and a server that
	// cannot create a thread may fail in ways nobody planned for: the bomb must not touch it.
	PidsMax int64
	// AgentOOMGroup sets memory.oom.group=1 on agent leaves: an OOM kill takes the agent's whole
	// tree instead of only the runaway process.
	AgentOOMGroup bool
}

// Validate reports limits that contradict each other.
func (l Limits) Validate() error {
	if !l.MemoryMax.IsSet() || !l.MemoryHigh.IsSet() {
		return errors.New("--memory-max and --memory-high must be set")
	}
	if !l.MemoryMax.IsMax() && l.MemoryMax.N() < 1<<20 {
		return fmt.Errorf("--memory-max %s: below 1M nothing can run", l.MemoryMax)
	}
	if l.MemoryHigh.N() > l.MemoryMax.N() {
		return fmt.Errorf("--memory-high %s is above --memory-max %s: agents would never be throttled before the OOM killer", l.MemoryHigh, l.MemoryMax)
	}
	if l.ServerMemoryLow.IsSet() && (l.ServerMemoryLow.IsMax() || l.ServerMemoryLow.N() >= l.MemoryMax.N()) {
		return fmt.Errorf("--server-memory-low %s must be below --memory-max %s", l.ServerMemoryLow, l.MemoryMax)
	}
	if l.AgentMemoryMax.IsSet() && l.AgentMemoryMax.N() > l.MemoryMax.N() {
		return fmt.Errorf("--agent-memory-max %s is above --memory-max %s", l.AgentMemoryMax, l.MemoryMax)
	}
	if l.PidsMax < 0 {
		return fmt.Errorf("--pids-max %d: must be positive (or 0 for no limit)", l.PidsMax)
	}
	return nil
}

// Op is the kind of a Step.
type Op string

// The operations of a plan.
const (
	OpMkdir    Op = "mkdir"     // create the cgroup Dir
	OpMoveSelf Op = "move-self" // write the supervisor's pid to Dir/cgroup.procs
	OpWrite    Op = "write"     // write Value to Dir/File
	OpXattr    Op = "setxattr"  // set extended attribute File=Value on Dir (best effort: Optional)
)

// Step is one change to the cgroup tree. Dir is relative to the unit's cgroup ("." is the unit's
// cgroup itself).
type Step struct {
	Op       Op     `json:"op"`
	Dir      string `json:"cgroup"`
	File     string `json:"file,omitempty"`
	Value    string `json:"value,omitempty"`
	Optional bool   `json:"optional,omitempty"` // a failure is reported, not fatal
}

func (s Step) String() string {
	switch s.Op {
	case OpMkdir:
		return "mkdir " + s.Dir
	case OpMoveSelf:
		return "move self to " + path.Join(s.Dir, "cgroup.procs")
	case OpXattr:
		return fmt.Sprintf("setxattr %s %s=%s", s.Dir, s.File, s.Value)
	}
	return fmt.Sprintf("write %s = %s", path.Join(s.Dir, s.File), s.Value)
}

func write(dir, file, value string) Step {
	return Step{Op: OpWrite, Dir: dir, File: file, Value: value}
}

func enable(dir string) Step {
	v := ""
	for i, c := range Controllers {
		if i > 0 {
			v += " "
		}
		v += "+" + c
	}
	return write(dir, "cgroup.subtree_control", v)
}

// Plan is every change that sets up the subtree, in order. It is pure: the dry-run prints it,
// the real run applies it.
func Plan(l Limits) []Step {
	steps := []Step{
		{Op: OpMkdir, Dir: SupervisorDir},
		// Out of the unit's cgroup before enabling controllers in it: no internal processes.
		{Op: OpMoveSelf, Dir: SupervisorDir},
		// The unit's own cgroup: only cgroup.subtree_control is ours to write (Delegate=yes).
		enable("."),
		write(SupervisorDir, "memory.max", strconv.Itoa(SupervisorMemoryMax)),
		{Op: OpMkdir, Dir: WorkloadDir},
		enable(WorkloadDir),
		{Op: OpMkdir, Dir: ServerDir},
		{Op: OpMkdir, Dir: AgentsDir},
		enable(AgentsDir),
		write(WorkloadDir, "memory.max", l.MemoryMax.FileValue()),
		// No swap: a runaway must hit memory.max and die, not smear into minutes of swap-in
		// stalls that trip the T3 client's 20 s watchdog (the 2026-06-10 incident).
		write(WorkloadDir, "memory.swap.max", "0"),
		// 0: the OOM killer takes the single runaway process, never the whole workload
		// (cgroup-v2.rst, "memory.oom.group").
		write(WorkloadDir, "memory.oom.group", "0"),
		write(AgentsDir, "memory.oom.group", "0"),
		write(AgentsDir, "memory.high", l.MemoryHigh.FileValue()),
	}
	if l.PidsMax > 0 {
		steps = append(steps, write(AgentsDir, "pids.max", strconv.FormatInt(l.PidsMax, 10)))
	}
	if l.ServerMemoryLow.IsSet() {
		steps = append(steps, write(ServerDir, "memory.low", l.ServerMemoryLow.FileValue()))
	}
	// systemd-oomd skips cgroups marked so (systemd-oomd.service(8)); user.* xattrs on cgroupfs
	// need Linux 5.7, hence optional.
	steps = append(steps, Step{Op: OpXattr, Dir: ServerDir, File: "user.oomd_avoid", Value: "1", Optional: true})
	return steps
}

// LeafSteps are the writes made on every new agent leaf, relative to that leaf.
func LeafSteps(l Limits) []Step {
	var steps []Step
	if l.AgentMemoryMax.IsSet() {
		steps = append(steps, write(".", "memory.max", l.AgentMemoryMax.FileValue()))
	}
	if l.AgentOOMGroup {
		steps = append(steps, write(".", "memory.oom.group", "1"))
	}
	return steps
}
