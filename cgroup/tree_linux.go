//go:build linux

package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// DefaultMount is where systemd mounts the unified hierarchy.
const DefaultMount = "/sys/fs/cgroup"

// Sentinel errors callers branch on; the concrete errors name the file and the fix.
var (
	ErrNotV2        = errors.New("not a cgroup v2 (unified) hierarchy")
	ErrNotDelegated = errors.New("cgroup not delegated")
	ErrNoController = errors.New("controller not available")
	ErrNoSwap       = errors.New("no swap accounting")
)

// Error is a failed check or write; it names the file, and Hint says what to change.
type Error struct {
	Path  string
	Value string // the value written, if any
	Err   error
	Hint  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Value != "" {
		fmt.Fprintf(&b, "write %s = %q: %v", e.Path, e.Value, e.Err)
	} else {
		fmt.Fprintf(&b, "%s: %v", e.Path, e.Err)
	}
	if e.Hint != "" {
		b.WriteString(" (" + e.Hint + ")")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Options say where the hierarchy is. Tests point Mount at a directory of plain files.
type Options struct {
	Mount string // default DefaultMount
	// FakeFS skips the checks only a real cgroupfs can pass (filesystem magic, delegation
	// xattrs), for unit tests on a temp directory.
	FakeFS bool
}

// Tree is the supervisor's subtree: the unit's cgroup (Base) and what we create below it.
type Tree struct {
	Mount string // the unified hierarchy's mount point
	Base  string // the unit's cgroup, relative to Mount, e.g. "/system.slice/t3-supervise@alice.service"
	fake  bool

	expect atomic.Pointer[expectedChild] // a child of the supervisor that may be in supervisor/ (ExpectChild)
}

// Dir is the absolute path of dir (relative to the unit's cgroup).
func (t *Tree) Dir(dir string) string { return filepath.Join(t.Mount, t.Base, dir) }

// Discover finds the caller's cgroup from procSelfCgroup (the content of /proc/self/cgroup) and
// checks, without changing anything, that a real run can set up its subtree there: a cgroup v2
// hierarchy, delegated to us, offering the memory and pids controllers, with swap accounting.
func Discover(procSelfCgroup io.Reader, opt Options) (*Tree, error) {
	mount := opt.Mount
	if mount == "" {
		mount = DefaultMount
	}
	sc, err := ParseProcCgroup(procSelfCgroup)
	if err != nil {
		return nil, &Error{Path: "/proc/self/cgroup", Err: fmt.Errorf("%w: %v", ErrNotV2, err),
			Hint: "boot with systemd.unified_cgroup_hierarchy=1; or run with --no-cgroup"}
	}
	if len(sc.V1) > 0 {
		return nil, &Error{Path: "/proc/self/cgroup", Err: fmt.Errorf("%w: hybrid host, memory is a v1 controller here (%s)", ErrNotV2, strings.Join(sc.V1, ",")),
			Hint: "boot with systemd.unified_cgroup_hierarchy=1; or run with --no-cgroup"}
	}
	t := &Tree{Mount: mount, Base: sc.Path, fake: opt.FakeFS}
	if !t.fake {
		var st unix.Statfs_t
		if err := unix.Statfs(mount, &st); err != nil {
			return nil, &Error{Path: mount, Err: err}
		}
		if st.Type != unix.CGROUP2_SUPER_MAGIC {
			return nil, &Error{Path: mount, Err: fmt.Errorf("%w: not a cgroup2 filesystem", ErrNotV2),
				Hint: "boot with systemd.unified_cgroup_hierarchy=1; or run with --no-cgroup"}
		}
	}
	if t.Base == "/" {
		return nil, &Error{Path: t.Dir("."), Err: fmt.Errorf("%w: running in the root cgroup", ErrNotDelegated),
			Hint: "run under systemd with Delegate=yes (t3-supervise@.service); or run with --no-cgroup"}
	}
	if err := t.checkDelegated(); err != nil {
		return nil, err
	}
	ctl := t.Dir("cgroup.controllers")
	b, err := os.ReadFile(ctl)
	if err != nil {
		return nil, &Error{Path: ctl, Err: err}
	}
	have := strings.Fields(string(b))
	for _, c := range Controllers {
		if !slices.Contains(have, c) {
			return nil, &Error{Path: ctl, Err: fmt.Errorf("%w: %s (have %q)", ErrNoController, c, strings.TrimSpace(string(b))),
				Hint: "add Delegate=yes to the unit (it makes systemd enable memory and pids for it)"}
		}
	}
	swap := t.Dir("memory.swap.max")
	if _, err := os.Stat(swap); err != nil {
		return nil, &Error{Path: swap, Err: fmt.Errorf("%w: %v", ErrNoSwap, err),
			Hint: "the kernel lacks swap accounting (CONFIG_MEMCG_SWAP, or booted with cgroup.memory=noswap); memory.swap.max=0 cannot be set"}
	}
	return t, nil
}

// checkDelegated tells a delegated cgroup from one that merely happens to be writable. systemd
// marks a Delegate=yes cgroup with the trusted.delegate xattr (systemd 251+) and chowns its
// cgroup.procs, cgroup.subtree_control and the directory to the unit's user; a non-delegated
// unit's are root's, and systemd may rearrange a non-delegated subtree at any reload.
func (t *Tree) checkDelegated() error {
	base := t.Dir(".")
	hint := "add Delegate=yes to the unit; or run with --no-cgroup"
	if os.Geteuid() == 0 && !t.fake {
		for _, name := range []string{"trusted.delegate", "user.delegate"} {
			buf := make([]byte, 8)
			if n, err := unix.Getxattr(base, name, buf); err == nil && string(buf[:n]) == "1" {
				return nil
			}
		}
		return &Error{Path: base, Err: fmt.Errorf("%w: no trusted.delegate xattr", ErrNotDelegated), Hint: hint}
	}
	for _, p := range []string{base, t.Dir("cgroup.procs"), t.Dir("cgroup.subtree_control")} {
		if err := unix.Access(p, unix.W_OK); err != nil {
			return &Error{Path: p, Err: fmt.Errorf("%w: not writable: %v", ErrNotDelegated, err), Hint: hint}
		}
	}
	return nil
}

// Apply carries out steps, in order, with pid as "self" for OpMoveSelf. It stops at the first
// failure of a required step; failures of optional steps are returned as warnings.
func (t *Tree) Apply(steps []Step, pid int) (warnings []error, err error) {
	for _, s := range steps {
		if err := t.apply(s, pid); err != nil {
			if s.Optional {
				warnings = append(warnings, err)
				continue
			}
			return warnings, err
		}
	}
	return warnings, nil
}

func (t *Tree) apply(s Step, pid int) error {
	dir := t.Dir(s.Dir)
	switch s.Op {
	case OpMkdir:
		return t.mkdir(dir)
	case OpMoveSelf:
		return writeFile(dir, "cgroup.procs", strconv.Itoa(pid))
	case OpWrite:
		return writeFile(dir, s.File, s.Value)
	case OpXattr:
		if err := unix.Setxattr(dir, s.File, []byte(s.Value), 0); err != nil {
			return &Error{Path: dir, Value: s.File + "=" + s.Value, Err: err}
		}
		return nil
	}
	return fmt.Errorf("unknown step %q", s.Op)
}

// mkdir creates a cgroup. An existing one is fine: a supervisor restarted inside the same unit
// cgroup finds its earlier tree.
func (t *Tree) mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return &Error{Path: dir, Err: err, Hint: hintFor(err)}
	}
	if t.fake {
		// The kernel creates a new cgroup's interface files; a plain directory needs them made.
		for _, f := range fakeFiles {
			_ = os.WriteFile(filepath.Join(dir, f), nil, 0o644)
		}
	}
	return nil
}

// fakeFiles are the interface files a test's plain-directory "cgroupfs" gets on mkdir.
var fakeFiles = []string{
	"cgroup.procs", "cgroup.subtree_control", "cgroup.controllers", "cgroup.events", "cgroup.kill",
	"memory.max", "memory.high", "memory.low", "memory.swap.max", "memory.oom.group", "memory.events",
	"memory.current", "memory.pressure", "pids.max",
}

// writeFile is the one function every cgroupfs write goes through, so every failure names the
// file and the value (the model: opencontainers/cgroups fscommon.WriteFile). The kernel takes a
// cgroup file's value in one write(2); O_TRUNC is ignored by cgroupfs but harmless on a fake one.
func writeFile(dir, file, value string) error {
	p := filepath.Join(dir, file)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = f.WriteString(value)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return &Error{Path: p, Value: value, Err: err, Hint: hintFor(err)}
	}
	return nil
}

// maxCgroupFile bounds one read of a cgroup interface file: cgroup.procs of a cgroup with
// 500 000 processes fits.
const maxCgroupFile = 4 << 20

// readFile reads one cgroup interface file. The kernel makes those, but `status` runs as root
// on a path its caller names: it opens without following a symlink, without blocking (a FIFO),
// reads a regular file only and at most maxCgroupFile bytes (STYLE.md 14).
//
// It calls open, fstat, read until EOF and close directly: the watch reads a few of these files
// every 100 ms, and an *os.File opened O_NONBLOCK also tries (and fails, EPERM) to add a regular
// file to the runtime's epoll set, one syscall in six (BenchmarkLook).
func readFile(dir, file string) ([]byte, error) {
	p := filepath.Join(dir, file)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &Error{Path: p, Err: &os.PathError{Op: "open", Path: p, Err: err}}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &Error{Path: p, Err: &os.PathError{Op: "stat", Path: p, Err: err}}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &Error{Path: p, Err: fmt.Errorf("not a regular file (%v)", fileType(st.Mode))}
	}
	// Interface files report a size of 4096 or 0 (kernfs), so the size is no guide: start at a
	// page, grow while full.
	b := make([]byte, 0, 4096)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &Error{Path: p, Err: &os.PathError{Op: "read", Path: p, Err: err}}
		}
		if n == 0 {
			return b, nil
		}
		b = b[:len(b)+n]
		if len(b) > maxCgroupFile {
			return nil, &Error{Path: p, Err: fmt.Errorf("larger than %d bytes", maxCgroupFile)}
		}
	}
}

// fileType names a non-regular file's type as os.FileMode prints it.
func fileType(mode uint32) os.FileMode {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return os.ModeDir
	case unix.S_IFLNK:
		return os.ModeSymlink
	case unix.S_IFIFO:
		return os.ModeNamedPipe
	case unix.S_IFSOCK:
		return os.ModeSocket
	case unix.S_IFCHR:
		return os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		return os.ModeDevice
	}
	return os.ModeIrregular
}

func hintFor(err error) string {
	switch {
	case errors.Is(err, unix.EBUSY):
		return "a process is still in a cgroup that needs to be empty (no internal processes rule)"
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return "is the cgroup delegated? add Delegate=yes to the unit"
	case errors.Is(err, unix.EOPNOTSUPP):
		return "the controller is not enabled in the parent's cgroup.subtree_control"
	}
	return ""
}

// OpenServer opens server/ for clone3(CLONE_INTO_CGROUP): the child starts inside it, so not a
// page of t3's start-up is charged to the supervisor.
func (t *Tree) OpenServer() (*os.File, error) {
	p := t.Dir(ServerDir)
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &Error{Path: p, Err: err}
	}
	return f, nil
}

func (t *Tree) manager(dir string) (*cgroup2.Manager, error) {
	return cgroup2.Load(filepath.Join(t.Base, dir), cgroup2.WithMountpoint(t.Mount))
}

// KillAll kills everything in workload/ at once through cgroup.kill (Linux 5.14; the library
// falls back to freeze + SIGKILL on older kernels), grandchildren that called setsid included,
// and waits until the workload is empty.
func (t *Tree) KillAll() error {
	if _, err := os.Stat(t.Dir(WorkloadDir)); errors.Is(err, os.ErrNotExist) {
		return nil // never set up, or already torn down
	}
	m, err := t.manager(WorkloadDir)
	if err != nil {
		return err
	}
	if err := m.Kill(); err != nil {
		return &Error{Path: t.Dir(WorkloadDir + "/cgroup.kill"), Value: "1", Err: err}
	}
	return t.waitEmpty(WorkloadDir, 5*time.Second)
}

// Populated reports whether dir or any cgroup below it holds a process (cgroup.events,
// "populated").
func (t *Tree) Populated(dir string) (bool, error) {
	b, err := readFile(t.Dir(dir), "cgroup.events")
	if err != nil {
		return false, err
	}
	populated := false
	err = parseFlatKeyed(bytes.NewReader(b), func(k string, v uint64) {
		if k == "populated" {
			populated = v != 0
		}
	})
	return populated, err
}

func (t *Tree) waitEmpty(dir string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		pop, err := t.Populated(dir)
		if err != nil || !pop {
			return err
		}
		if time.Now().After(deadline) {
			return &Error{Path: t.Dir(dir), Err: fmt.Errorf("still populated %v after cgroup.kill", limit)}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Teardown removes the cgroups we created below the unit's cgroup, deepest first. It needs them
// empty (KillAll). supervisor/ stays: we are in it, and systemd removes it with the unit.
func (t *Tree) Teardown() error {
	var errs []error
	leaves, _ := os.ReadDir(t.Dir(AgentsDir))
	for _, e := range leaves {
		if e.IsDir() {
			errs = append(errs, rmdir(t.Dir(filepath.Join(AgentsDir, e.Name()))))
		}
	}
	for _, d := range []string{AgentsDir, ServerDir, WorkloadDir} {
		errs = append(errs, rmdir(t.Dir(d)))
	}
	return errors.Join(errs...)
}

// rmdir removes one cgroup; cgroupfs refuses os.RemoveAll's unlink of its files, and a cgroup is
// removed with rmdir(2) alone once it is empty. EBUSY right after the last process exited is
// transient (the kernel still tears the css down), so retry briefly.
func rmdir(p string) error {
	var err error
	for i := 0; i < 50; i++ {
		err = unix.Rmdir(p)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &Error{Path: p, Err: err}
}

// Usage is a quick look at the workload for the unit's STATUS= line.
type Usage struct {
	Current uint64 // workload memory.current, bytes
	Agents  int    // agent leaves
}

// Usage reads the workload's memory and counts the agent leaves.
func (t *Tree) Usage() Usage {
	cur, _ := t.readUint(WorkloadDir, "memory.current")
	return Usage{Current: cur, Agents: len(t.agentLeaves())}
}
