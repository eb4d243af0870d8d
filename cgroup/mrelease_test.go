//go:build linux

package cgroup

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// process_mrelease after a kill: a live process is refused (the kernel reaps only a dying one)
// and nothing is said; once SIGKILL is delivered the call succeeds and memory_released follows
// (unless the victim's exit freed its memory first).
func TestReleaseMemory(t *testing.T) {
	cmd := startHelper(t, "hang")
	pid := cmd.Process.Pid
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	v, ok := describe(pid)
	if !ok {
		t.Fatal("the helper is gone")
	}
	w := newWatcher(&Tree{}, WatchConfig{})
	ctx := context.Background()
	w.releaseMemory(ctx, fd, v, "pressure_kill")
	if len(w.out) != 0 {
		t.Fatalf("a live process's memory was released: %+v", <-w.out)
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		t.Fatal(err)
	}
	w.releaseMemory(ctx, fd, v, "pressure_kill")
	if len(w.out) == 0 {
		// The victim may have got through exit_mm first: then there was nothing to release
		// (ESRCH), and its statm says it has no memory left. Anything else is a failed call.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid)); err == nil && !strings.HasPrefix(string(b), "0 ") {
			t.Fatalf("after SIGKILL: no memory_released, and the victim still has its memory (statm %q)", b)
		}
		return
	}
	if e, ok := (<-w.out).(MemoryReleased); !ok || e.Victim.PID != pid || e.After != "pressure_kill" {
		t.Errorf("after SIGKILL: %+v", e)
	}
}
