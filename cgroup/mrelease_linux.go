//go:build linux

package cgroup

import (
	"context"
	"time"

	"golang.org/x/sys/unix"

	"t3-supervise/internal/procstat"
)

// MemoryReleased: process_mrelease(2) returned for a killed process: its memory is freed now (by
// the call, or already by the kernel's OOM reaper), not at the end of the victim's own exit,
// which under memory pressure (and emulation) can take seconds while the workload looks as full
// and stalled as before the kill.
type MemoryReleased struct {
	Victim Victim
	After  string        // the kill it followed: "pressure_kill" (our SIGKILL) or "oom_kill"
	Took   time.Duration // how long the call took
}

func (MemoryReleased) cgroupEvent() {}

// releaseMemory calls process_mrelease(2) (Linux 5.15) on a process that is being killed: the
// kernel reaps its address space right away, in the caller's context, rather than as the victim
// works its way through exit. Without it a slow teardown keeps agents/ full and stalled after a
// kill, which could start the next window (and a second kill) or make the OOM killer take a
// second process (BENCHMARKS.md §4). It needs a pidfd and a victim that is already dying
// (SIGKILL delivered): EINVAL otherwise, ESRCH once it is gone; ENOSYS before 5.15. Those are
// nothing to report: the kernel's own exit (and the OOM reaper for an OOM victim) frees it.
func (w *watcher) releaseMemory(ctx context.Context, pidfd int, v Victim, after string) {
	t0 := time.Now()
	if _, _, errno := unix.Syscall(unix.SYS_PROCESS_MRELEASE, uintptr(pidfd), 0, 0); errno != 0 {
		return
	}
	w.emit(ctx, MemoryReleased{Victim: v, After: after, Took: time.Since(t0)})
}

// releaseVictim is releaseMemory for an OOM victim the watch named: it still has to get a pidfd,
// and checks that the pid is still the victim's (pid reuse) before the call.
func (w *watcher) releaseVictim(ctx context.Context, v Victim) {
	fd, err := unix.PidfdOpen(v.PID, 0)
	if err != nil {
		return // gone already: its memory is freed
	}
	defer unix.Close(fd)
	if st, err := procstat.Read(v.PID); err != nil || st.StartTime != v.start {
		return
	}
	w.releaseMemory(ctx, fd, v, "oom_kill")
}
