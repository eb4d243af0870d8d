//go:build linux

package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"t3-supervise/internal/procstat"
)

func TestRSSMatchesVmRSS(t *testing.T) {
	b, _ := os.ReadFile("/proc/self/status")
	var kb uint64
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			fmt.Sscan(f[1], &kb)
		}
	}
	got := rss(os.Getpid())
	if diff := int64(got) - int64(kb<<10); kb == 0 || diff > 4<<20 || diff < -4<<20 {
		t.Errorf("rss %d, VmRSS %d KiB", got, kb)
	}
	if rss(1<<30) != 0 {
		t.Error("rss of a missing pid")
	}
}

// describe names a live process by its identity, comm, command line and RSS, and refuses a pid
// that is gone: the watch keeps only processes it could tell apart from a later pid reuse.
func TestDescribe(t *testing.T) {
	v, ok := describe(os.Getpid())
	st, err := procstat.Read(os.Getpid())
	if !ok || err != nil || v.PID != os.Getpid() || v.start != st.StartTime {
		t.Fatalf("self: %+v %v %v", v, ok, err)
	}
	want, _ := os.ReadFile("/proc/self/comm")
	if v.Comm != strings.TrimSpace(string(want)) || !strings.Contains(v.Cmdline, os.Args[0]) || v.RSS == 0 {
		t.Errorf("self: comm %q (want %q), cmdline %q, rss %d", v.Comm, want, v.Cmdline, v.RSS)
	}
	if _, ok := describe(1 << 30); ok {
		t.Error("a missing pid was described")
	}
}

// sharesServerMM tells a child still in the server's address space (between vfork and exec)
// from one that has exec'd: the watch gives only the first the shim's grace.
func TestSharesServerMM(t *testing.T) {
	w := &watcher{cfg: WatchConfig{ServerPID: os.Getpid()}}
	if !w.sharesServerMM(os.Getpid()) {
		t.Fatal("kcmp(KCMP_VM) does not see a process share its own address space (CONFIG_KCMP?)")
	}
	child := exec.Command("sleep", "10")
	if err := child.Start(); err != nil { // Start returns once the child has exec'd
		t.Fatal(err)
	}
	defer child.Wait()
	defer child.Process.Kill()
	if w.sharesServerMM(child.Process.Pid) {
		t.Error("an exec'd child counted as sharing the server's memory")
	}
	if (&watcher{}).sharesServerMM(os.Getpid()) {
		t.Error("no server pid, yet a match")
	}
}
