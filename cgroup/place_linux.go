//go:build linux

package cgroup

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"t3-supervise/internal/procstat"
)

// Placement: every process in server/ but the server goes into an agent leaf of its own.

// shimGrace is how long the watch lets a shim place itself; forkGrace is how long it leaves any
// new process alone first: between fork and exec a shim-to-be still runs the server's own
// executable, and under load that window is not short. A child that still shares the server's
// memory has not exec'd yet at all, and gets shimGrace too (sharesServerMM).
const (
	shimGrace = 2 * time.Second
	forkGrace = 300 * time.Millisecond
)

// isShim reports whether pid runs the supervisor's own executable (a shim not yet exec'd).
func (w *watcher) isShim(pid int) bool {
	if w.shim == nil {
		return false
	}
	st, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/exe")
	return err == nil && os.SameFile(st, w.shim)
}

// kcmpVM is KCMP_VM of include/uapi/linux/kcmp.h; x/sys/unix has the syscall number only.
const kcmpVM = 1

// sharesServerMM reports whether pid still uses the server's address space: a child spawned
// with vfork semantics (CLONE_VM|CLONE_VFORK: Go's os/exec, glibc's posix_spawn) that has not
// reached exec. kcmp(2) answers from the kernel's pointers, reading nothing of either process; it
// needs the same ptrace read access as /proc/PID/maps, which the supervisor has over its own
// user's processes. Any error (no CONFIG_KCMP, the process gone) is "no".
func (w *watcher) sharesServerMM(pid int) bool {
	if w.cfg.ServerPID <= 0 {
		return false
	}
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(w.cfg.ServerPID), kcmpVM, 0, 0, 0)
	return errno == 0 && r == 0
}

// moveOut moves every process in server/ other than the server into an agent leaf: an SDK may
// spawn agents by absolute path, around the shim. A process is moved with the leaf of its
// topmost ancestor below the server, so a tree that forked before we saw it stays together.
// It runs at every look (PlaceInterval): no kernel event announces a process forked into a
// cgroup, so this stays a poll, of one file.
func (w *watcher) moveOut(ctx context.Context) {
	pids, err := w.t.procs(ServerDir)
	if err != nil {
		w.warn(ctx, err)
		return
	}
	w.resolveServer(ctx, pids)
	now := w.clock.Now()
	seen := make(map[int]time.Time, len(pids))
	for _, pid := range pids {
		if w.isServer(pid) {
			continue
		}
		first, ok := w.seen[pid]
		if !ok {
			first = now
		}
		seen[pid] = first
		if age := now.Sub(first); age < forkGrace || (age < shimGrace && (w.isShim(pid) || w.sharesServerMM(pid))) {
			continue
		}
		root := pid
		if w.serverKnown {
			root = w.rootBelowServer(pid)
		} else if !w.agentByName(pid) {
			continue // it may be the server behind a wrapper, not listening yet
		}
		leaf, err := LeafName(root)
		if err != nil {
			continue // exited meanwhile
		}
		created, err := w.ensureLeaf(leaf)
		if err != nil {
			w.warn(ctx, err)
			continue
		}
		if err := writeFile(w.t.Dir(AgentsDir+"/"+leaf), "cgroup.procs", strconv.Itoa(pid)); err != nil {
			if !errors.Is(err, unix.ESRCH) {
				w.warn(ctx, err)
			}
			continue
		}
		if err := setOOMScoreAdj(pid, w.cfg.AgentOOMAdj); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ESRCH) {
			w.warn(ctx, err)
		}
		if created {
			v, _ := describe(pid)
			w.emit(ctx, AgentPlaced{Leaf: leaf, PID: pid, Comm: v.Comm, Via: "watch"})
		}
	}
	w.seen = seen
}

// adoptLeaves applies the per-leaf limits to the leaves the shim made for itself, and reports
// each once. A shim's mkdir in agents/ raises IN_CREATE there, which wakes a full look
// (look_linux.go), so this runs then and at the sweep, not at every look.
func (w *watcher) adoptLeaves(ctx context.Context) {
	w.armDir(w.t.Dir(AgentsDir))
	for _, leaf := range w.t.agentLeaves() {
		if w.leaves[leaf] {
			continue
		}
		if err := w.applyLeaf(leaf); err != nil {
			w.warn(ctx, err)
		}
		w.leaves[leaf] = true
		// A shim names its leaf <pid>-<start>; anything else was made by someone else.
		ev := AgentPlaced{Leaf: leaf, Via: "shim"}
		if pid, _, ok := strings.Cut(leaf, "-"); ok {
			if n, err := strconv.Atoi(pid); err == nil && n > 0 {
				v, _ := describe(n)
				ev.PID, ev.Comm = n, v.Comm
			}
		}
		if ev.PID == 0 {
			ev.Via = "other"
		}
		w.emit(ctx, ev)
	}
}

// rootBelowServer walks up from pid to the ancestor whose parent is the server (or one of the
// processes between the server and a wrapper). A process whose chain never reaches the server
// (re-parented after its parent died) is its own root.
func (w *watcher) rootBelowServer(pid int) int {
	cur := pid
	for i := 0; i < 64; i++ {
		st, err := procstat.Read(cur)
		if err != nil || st.PPID <= 1 {
			return pid
		}
		if w.isServer(st.PPID) {
			return cur
		}
		cur = st.PPID
	}
	return pid
}

// ensureLeaf makes the agent leaf for a process the watch places. A leaf that already exists
// but is not ours yet was made by a shim that got there first (its process left server/ after
// the watch listed it): created=false, and the leaf scan in place applies its limits and
// reports it as the shim's.
func (w *watcher) ensureLeaf(leaf string) (created bool, err error) {
	if w.leaves[leaf] {
		return false, nil
	}
	dir := w.t.Dir(AgentsDir + "/" + leaf)
	if err := os.Mkdir(dir, 0o755); errors.Is(err, os.ErrExist) {
		return false, nil
	} else if err != nil {
		return false, &Error{Path: dir, Err: err}
	}
	w.leaves[leaf] = true
	return true, w.applyLeaf(leaf)
}

func (w *watcher) applyLeaf(leaf string) error {
	for _, s := range LeafSteps(w.cfg.Limits) {
		if err := writeFile(w.t.Dir(AgentsDir+"/"+leaf+"/"+s.Dir), s.File, s.Value); err != nil {
			return err
		}
	}
	return nil
}
