//go:build linux

package cgroup

import (
	"context"
	"errors"
	"os"
	"path"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"t3-supervise/internal/procstat"
)

// Escapes from the workload.
//
// With Delegate=yes systemd hands the user the whole subtree (systemd.resource-control(5),
// Delegate=): the unit's cgroup.procs and every cgroup below it belong to the user, and an
// agent is that user. A move between two cgroups needs write access to the destination's
// cgroup.procs and to that of their common ancestor (Documentation/admin-guide/cgroup-v2.rst,
// "Delegation Containment"); for workload/agents/X and supervisor/ the common ancestor is the
// unit's own cgroup, which systemd chowned to the user. So `echo $$ > supervisor/cgroup.procs`
// works, and so does a mkdir of a new cgroup beside workload/ (or in it, or in server/) and a
// move there: out of memory.max (seen in the guest: 447M held against a 300M limit).
//
// The kernel has no way to forbid it while the supervisor and the agents are one uid: the
// supervisor cannot give a file to root, and the owner of a cgroupfs file may chmod it back
// (kernfs_iop_setattr). A cgroup namespace rooted at workload/ would contain a process
// (cgroup_procs_write_permission checks that both ends are below the writer's namespace root),
// but creating one needs CAP_SYS_ADMIN, so a user namespace, around every agent.
//
// So the watch polices the subtree (reading supervisor/cgroup.procs, the unit's own, those of
// workload/ and agents/, and three small directories) at once when one of them changes, and at
// the sweep every second (look_linux.go: a process started by clone3 with CLONE_INTO_CGROUP
// writes no cgroup.procs), and a process anywhere it does not belong is killed (SIGKILL
// through a pidfd, after checking it is still the process that was read). Killed, not moved
// back: nothing of t3's ever moves itself out of the workload, and a process moved back could
// move out again every time, each time out of the limits until the next look. supervisor/ also
// gets a memory.max (Plan) so that what an escapee can take before that look is bounded.
// Empty cgroups the supervisor did not make are removed.

// expectedChild is a short-lived child the supervisor itself runs in supervisor/ (the upgrade's
// `version` probe of a new binary, cmd/t3-supervise/upgrade.go).
type expectedChild struct {
	ppid int
	exe  [][2]uint64 // (dev, ino) of the files it may execute: the supervisor's before execve, the probed one after
}

// ExpectChild lets a child of supervisorPID that executes one of files stay in supervisor/
// until done is called; the police kills any other process there. The supervisor calls it
// before it starts the child, so that no look in between finds it unexpected. An escapee
// would have to be the supervisor's child (an orphan it reaped as subreaper), run one of those
// files and do it in that window (one probe per upgrade, at most 10 s).
func (t *Tree) ExpectChild(supervisorPID int, files ...string) (done func()) {
	e := &expectedChild{ppid: supervisorPID}
	for _, f := range files {
		var st unix.Stat_t
		if unix.Stat(f, &st) == nil {
			e.exe = append(e.exe, [2]uint64{uint64(st.Dev), st.Ino})
		}
	}
	t.expect.Store(e)
	return func() { t.expect.CompareAndSwap(e, nil) }
}

// expected says whether pid is the child ExpectChild allows.
func (t *Tree) expected(pid int) bool {
	e := t.expect.Load()
	if e == nil {
		return false
	}
	if st, err := procstat.Read(pid); err != nil || st.PPID != e.ppid {
		return false
	}
	var st unix.Stat_t
	if unix.Stat("/proc/"+strconv.Itoa(pid)+"/exe", &st) != nil {
		return false
	}
	return slices.Contains(e.exe, [2]uint64{uint64(st.Dev), st.Ino})
}

// policeLook is the police of a full look. On an inotify event (remove false) it kills, but
// leaves an empty foreign cgroup to the sweep: a cgroup made a moment ago is about to receive
// the process that made it (mkdir, then the write to its cgroup.procs, which is watched from
// here on). Removed at once, the move fails and the escapee lives on, unreported, to try again;
// left, the move is seen and the process killed and named (stray_killed), as before.
func (w *watcher) policeLook(ctx context.Context, remove bool) {
	if w.cfg.SupervisorPID <= 0 {
		return
	}
	w.armFile(w.t.Dir(SupervisorDir), "cgroup.procs")
	pids, _ := w.t.procs(SupervisorDir)
	for _, pid := range pids {
		if pid != w.cfg.SupervisorPID && !w.t.expected(pid) {
			w.killStray(ctx, pid, SupervisorDir)
		}
	}
	// The unit's own cgroup holds no process once the supervisor moved out (and cannot while
	// controllers are enabled in it, unless someone disabled them first).
	// Nor do workload/ and agents/ (no internal processes: cgroup-v2.rst). One there took the
	// controllers out of the cgroup.subtree_control first, to escape the limits below, and
	// blocks their restore (EBUSY) while it stays (guard_linux.go).
	for _, dir := range []string{".", WorkloadDir, AgentsDir} {
		w.armFile(w.t.Dir(dir), "cgroup.procs")
		pids, _ = w.t.procs(dir)
		for _, pid := range pids {
			w.killStray(ctx, pid, dir)
		}
	}
	known := map[string][]string{".": {SupervisorDir, WorkloadDir}, WorkloadDir: {"server", "agents"}, ServerDir: nil}
	for dir, want := range known {
		w.armDir(w.t.Dir(dir))
		entries, err := os.ReadDir(w.t.Dir(dir))
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() || contains(want, e.Name()) || (dir == "." && e.Name() == ".control" && rootOwned(w.t.Dir(".control"))) {
				// .control, made by systemd as root: with Delegate=yes it runs the unit's
				// control processes (an operator's ExecReload=, ExecStop=) there. One the
				// user made is not systemd's.
				continue
			}
			w.clearForeign(ctx, path.Join(dir, e.Name()), 0, remove)
		}
	}
}

// clearForeign kills every process in the cgroup dir (not made by the supervisor) and in the
// cgroups below it, and (remove) removes them once empty, deepest first.
func (w *watcher) clearForeign(ctx context.Context, dir string, depth int, remove bool) {
	if depth > 16 {
		return
	}
	// Watched while it lasts: a cgroup made in it, or a process moved into it, before the rmdir
	// below wakes the next look, not only the sweep.
	w.armDir(w.t.Dir(dir))
	w.armFile(w.t.Dir(dir), "cgroup.procs")
	entries, _ := os.ReadDir(w.t.Dir(dir))
	for _, e := range entries {
		if e.IsDir() {
			w.clearForeign(ctx, path.Join(dir, e.Name()), depth+1, remove)
		}
	}
	pids, _ := w.t.procs(dir)
	for _, pid := range pids {
		w.killStray(ctx, pid, dir)
	}
	if !remove {
		return
	}
	if pop, err := w.t.Populated(dir); err == nil && !pop {
		_ = unix.Rmdir(w.t.Dir(dir)) // EBUSY while a killed process is still exiting: next time
	}
}

// killStray kills pid, found in dir, and reports it once.
func (w *watcher) killStray(ctx context.Context, pid int, dir string) {
	if pid == w.cfg.SupervisorPID || pid <= 1 {
		return
	}
	v, ok := describe(pid)
	if !ok {
		return
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // gone
	}
	defer unix.Close(fd)
	// The pidfd pins the process: check it is the one described (pid reuse) before the kill.
	if st, err := procstat.Read(pid); err != nil || st.StartTime != v.start {
		return
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		if !errors.Is(err, unix.ESRCH) {
			w.warn(ctx, &Error{Path: w.t.Dir(dir), Err: err, Hint: "killing pid " + strconv.Itoa(pid) + ", which escaped the workload"})
		}
		return
	}
	if w.strays[pid] == v.start {
		return // killed already, still exiting
	}
	w.strays[pid] = v.start
	v.Leaf = dir
	w.emit(ctx, StrayKilled{Victim: v, Cgroup: dir})
}

func rootOwned(p string) bool {
	var st unix.Stat_t
	return unix.Lstat(p, &st) == nil && st.Uid == 0
}
