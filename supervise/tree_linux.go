//go:build linux

package supervise

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v4/process"
	"golang.org/x/sys/unix"
)

// SetSubreaper makes the calling process the child subreaper of everything it spawns
// (prctl(2) PR_SET_CHILD_SUBREAPER): a grandchild whose parent dies — an agent's tool that
// called setsid and was left behind — is re-parented to the supervisor instead of to PID 1, so
// KillTree still finds it. The supervisor must then reap those orphans: see ReapOrphans.
func SetSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl PR_SET_CHILD_SUBREAPER: %w", err)
	}
	return nil
}

// ReapOrphans reaps every exited child of the calling process except keep (the child whose
// Wait belongs to Child.wait). A subreaper inherits orphans it never started; without this they
// stay zombies for the supervisor's whole life. It returns the pids it reaped.
func ReapOrphans(keep int) []int {
	var reaped []int
	for _, pid := range childrenOf(int32(unix.Getpid())) {
		if int(pid) == keep {
			continue
		}
		var ws unix.WaitStatus
		// WNOHANG: only the ones that already exited; a live orphan is reaped on its own SIGCHLD.
		if got, err := unix.Wait4(int(pid), &ws, unix.WNOHANG, nil); err == nil && got == int(pid) {
			reaped = append(reaped, got)
		}
	}
	return reaped
}

// childrenOf lists the direct children of pid from /proc.
func childrenOf(pid int32) []int32 {
	p, err := process.NewProcess(pid)
	if err != nil {
		return nil
	}
	kids, err := p.Children()
	if err != nil {
		return nil
	}
	out := make([]int32, 0, len(kids))
	for _, k := range kids {
		out = append(out, k.Pid)
	}
	return out
}

// Descendants lists every process below root, children before grandchildren, in one pass over
// /proc (parents looked up in a map, not one /proc scan per level).
func Descendants(root int) []int {
	procs, err := process.Processes()
	if err != nil {
		return nil
	}
	kids := make(map[int32][]int32)
	for _, p := range procs {
		ppid, err := p.Ppid()
		if err != nil {
			continue // exited while we looked
		}
		kids[ppid] = append(kids[ppid], p.Pid)
	}
	var out []int
	queue := []int32{int32(root)}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, k := range kids[pid] {
			out = append(out, int(k))
			queue = append(queue, k)
		}
	}
	return out
}

// treeKiller kills the process tree below root. Without a cgroup this is the only way to reach
// grandchildren, and it only reaches the ones that stayed in the tree: SetSubreaper makes sure
// orphans do.
type treeKiller struct{ root int }

// KillAll SIGKILLs every descendant of the root until none is left alive. A process can fork
// between the listing and the kill, so it repeats; a zombie counts as gone (it is dead and only
// waits to be reaped). It gives up after a bound rather than spin forever on a fork bomb.
func (t treeKiller) KillAll() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		alive := 0
		for _, pid := range Descendants(t.root) {
			if zombie(pid) {
				continue
			}
			alive++
			if err := unix.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("kill pid %d: %w", pid, err)
			}
		}
		if alive == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes below pid %d still alive after SIGKILL for 5s", alive, t.root)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func zombie(pid int) bool {
	p, err := process.NewProcessWithContext(context.Background(), int32(pid))
	if err != nil {
		return true // gone
	}
	st, err := p.Status()
	if err != nil {
		return true
	}
	for _, s := range st {
		if s == process.Zombie {
			return true
		}
	}
	return false
}
