//go:build linux

package cgroup

import (
	"bytes"
	"os"
	"sort"
	"strings"
)

// Status is a snapshot of a running supervisor's subtree, read from cgroupfs and /proc alone:
// anyone who may read them (root, the unit's user) can take it without being the supervisor's
// parent. Its JSON form is the supported way for fleet tooling to ask "is this user busy?" and
// is stable: fields are only ever added (Schema says which version the reader got).
type Status struct {
	Schema     int           `json:"schema"` // 1
	Cgroup     string        `json:"cgroup"` // the unit's cgroup directory
	Supervisor *ProcInfo     `json:"supervisor"`
	Server     *ProcInfo     `json:"server"`
	Workload   Memory        `json:"workload"`
	AgentsHigh string        `json:"agents_memory_high"`
	Agents     []AgentStatus `json:"agents"`
	// Busy, as ReadStatus takes it from one look, is true when any agent leaf holds a process.
	// That is presence, not activity (an open session idling holds its claude for ever): the
	// supervisor's own judgement over a window of samples (Judge) replaces it where there is one.
	Busy bool `json:"busy"`
}

// ProcInfo describes one process.
type ProcInfo struct {
	PID     int    `json:"pid"`
	State   string `json:"state"` // R, S, D, Z, T ... (proc(5))
	Comm    string `json:"comm"`
	Cmdline string `json:"cmdline"`
	RSS     uint64 `json:"rss"`
}

// Memory is a cgroup's memory accounting.
type Memory struct {
	Current uint64       `json:"memory_current"`
	Peak    uint64       `json:"memory_peak,omitempty"` // memory.peak, Linux 5.19+
	Max     string       `json:"memory_max,omitempty"`
	Events  MemoryEvents `json:"events"`
}

// AgentStatus is one agent leaf.
type AgentStatus struct {
	Leaf   string `json:"leaf"`
	Memory Memory `json:"memory"`
	// CPUUsageUSec is the leaf's cumulative CPU time, cpu.stat usage_usec (0 if unreadable).
	CPUUsageUSec uint64     `json:"cpu_usage_usec"`
	Processes    []ProcInfo `json:"processes"`
}

// ReadStatus takes the snapshot. It fails only when the subtree is not there (the unit is not
// running, or not under t3-supervise).
func (t *Tree) ReadStatus() (*Status, error) {
	if _, err := os.Stat(t.Dir(WorkloadDir)); err != nil {
		return nil, &Error{Path: t.Dir(WorkloadDir), Err: err, Hint: "is the unit running under t3-supervise?"}
	}
	st := &Status{Schema: 1, Cgroup: t.Dir("."), Agents: []AgentStatus{}}
	if pids, _ := t.procs(SupervisorDir); len(pids) > 0 {
		st.Supervisor = procInfo(pids[0])
	}
	if pids, _ := t.procs(ServerDir); len(pids) > 0 {
		st.Server = procInfo(pids[0])
	}
	st.Workload = t.memory(WorkloadDir)
	if b, err := readFile(t.Dir(AgentsDir), "memory.high"); err == nil {
		st.AgentsHigh = strings.TrimSpace(string(b))
	}
	leaves := t.agentLeaves()
	sort.Strings(leaves)
	for _, leaf := range leaves {
		dir := AgentsDir + "/" + leaf
		a := AgentStatus{Leaf: leaf, Memory: t.memory(dir), Processes: []ProcInfo{}}
		if cpu, err := t.cpuStat(dir); err == nil {
			a.CPUUsageUSec = cpu.UsageUSec
		}
		pids, _ := t.procs(dir)
		for _, pid := range pids {
			if p := procInfo(pid); p != nil {
				a.Processes = append(a.Processes, *p)
			}
		}
		if len(a.Processes) > 0 {
			st.Busy = true
		}
		st.Agents = append(st.Agents, a)
	}
	return st, nil
}

func (t *Tree) memory(dir string) Memory {
	var m Memory
	m.Current, _ = t.readUint(dir, "memory.current")
	m.Peak, _ = t.readUint(dir, "memory.peak")
	if b, err := readFile(t.Dir(dir), "memory.max"); err == nil {
		m.Max = strings.TrimSpace(string(b))
	}
	if b, err := readFile(t.Dir(dir), "memory.events"); err == nil {
		m.Events, _ = ParseMemoryEvents(bytes.NewReader(b))
	}
	return m
}

func procInfo(pid int) *ProcInfo {
	v, ok := describe(pid)
	if !ok {
		return nil
	}
	p := &ProcInfo{PID: pid, Comm: v.Comm, Cmdline: v.Cmdline, RSS: v.RSS}
	if st, err := readProcStat(pid); err == nil {
		p.State = string(st.State)
	}
	return p
}

// UnitTree is the subtree of t3-supervise@USER.service, found without asking systemd: template
// instances live in system.slice/system-PREFIX.slice, with '-' in the prefix escaped as \x2d
// (systemd.unit(5), "String Escaping").
func UnitTree(mount, user string) *Tree {
	if mount == "" {
		mount = DefaultMount
	}
	base := "/system.slice/system-t3\\x2dsupervise.slice/t3-supervise@" + user + ".service"
	return &Tree{Mount: mount, Base: base}
}

// CgroupTree is the subtree at an explicit unit cgroup path (as ControlGroup= shows it).
func CgroupTree(mount, base string) *Tree {
	if mount == "" {
		mount = DefaultMount
	}
	return &Tree{Mount: mount, Base: "/" + strings.TrimPrefix(base, "/")}
}
