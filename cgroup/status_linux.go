//go:build linux

package cgroup

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"t3-supervise/internal/procstat"
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
	// PSI is false when agents/memory.pressure cannot be read: the supervisor's pressure kill
	// cannot work on this host (PressureUnavailable); PSIError says why.
	PSI      bool   `json:"psi"`
	PSIError string `json:"psi_error,omitempty"`
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
	if err := t.checkReal(); err != nil {
		return nil, err
	}
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
	if err := t.PressureAvailable(AgentsDir); err != nil {
		st.PSIError = err.Error()
	} else {
		st.PSI = true
	}
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

// PressureAvailable reports whether dir's memory.pressure (PSI) can be read and parsed. The
// kernel creates the file only with CONFIG_PSI and without psi=0 on the command line
// (Documentation/accounting/psi.rst); on a kernel that has it, reads fail with EOPNOTSUPP when
// it is disabled.
func (t *Tree) PressureAvailable(dir string) error {
	b, err := readFile(t.Dir(dir), "memory.pressure")
	if err == nil {
		_, _, err = ParsePressure(bytes.NewReader(b))
		if err != nil {
			err = &Error{Path: t.Dir(dir + "/memory.pressure"), Err: err}
		}
	}
	if err != nil {
		return fmt.Errorf("no memory pressure (PSI) here: %w (a kernel without CONFIG_PSI, or booted with psi=0): the pressure kill cannot work, only memory.max's OOM kill ends a runaway", err)
	}
	return nil
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
	if st, err := procstat.Read(pid); err == nil {
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
	return &Tree{Mount: mount, Base: unitSlice + "/t3-supervise@" + user + ".service"}
}

// unitSlice is where systemd puts every t3-supervise@USER.service.
const unitSlice = "/system.slice/system-t3\\x2dsupervise.slice"

// UnitUsers lists the users whose t3-supervise@USER.service has a cgroup under mount ("": the
// default mount): every unit systemd runs now, whatever it is doing, without asking systemd.
func UnitUsers(mount string) []string {
	if mount == "" {
		mount = DefaultMount
	}
	entries, _ := os.ReadDir(filepath.Join(mount, unitSlice))
	var users []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() && strings.HasPrefix(name, "t3-supervise@") && strings.HasSuffix(name, ".service") {
			if u := strings.TrimSuffix(strings.TrimPrefix(name, "t3-supervise@"), ".service"); u != "" {
				users = append(users, u)
			}
		}
	}
	sort.Strings(users)
	return users
}

// CgroupTree is the subtree at an explicit unit cgroup path (as ControlGroup= shows it). The
// path must stay inside the hierarchy: no "." or ".." segment (filepath.Join would climb out of
// the mount with them, into a directory whose files the user chose).
func CgroupTree(mount, base string) (*Tree, error) {
	if mount == "" {
		mount = DefaultMount
	}
	if base == "" || strings.ContainsRune(base, 0) {
		return nil, fmt.Errorf("%q is not a cgroup path", base)
	}
	for _, seg := range strings.Split(strings.Trim(base, "/"), "/") {
		if seg == "." || seg == ".." {
			return nil, fmt.Errorf("%q: a cgroup path with %q would leave the unit's tree", base, seg)
		}
	}
	return &Tree{Mount: mount, Base: "/" + strings.Trim(base, "/")}, nil
}

// OnFakeFS marks t as a test's plain-directory "cgroupfs" (as TreeOptions.FakeFS does for
// New): ReadStatus then does not ask for a cgroup2 filesystem, and still refuses symlinks.
// Only tests call it; status never does.
func (t *Tree) OnFakeFS() *Tree {
	t.fake = true
	return t
}

// checkReal makes sure the tree is what status may read as root: a directory of the cgroup2
// filesystem (whose files the kernel makes, never the user: no FIFO, no symlink, no planted
// file), reached through no symlink at all, so it cannot lead out of the hierarchy either.
func (t *Tree) checkReal() error {
	dir := t.Dir(".")
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return &Error{Path: dir, Err: err, Hint: "is the unit running under t3-supervise?"}
	}
	if real != dir {
		return &Error{Path: dir, Err: fmt.Errorf("leads through a symlink to %s: refusing to read it", real)}
	}
	if t.fake {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return &Error{Path: dir, Err: err}
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return &Error{Path: dir, Err: fmt.Errorf("%w: not on a cgroup2 filesystem: refusing to read it", ErrNotV2)}
	}
	return nil
}
