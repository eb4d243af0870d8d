//go:build linux

package cgroup

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/shirou/gopsutil/v4/process"
	"t3-supervise/internal/procstat"
)

// LeafName names the agent leaf of the process tree rooted at pid: "<pid>-<starttime>", unique
// across pid reuse, and the same whether the shim (in that process) or the supervisor's watch
// (from outside) computes it, so the two never put one agent in two leaves.
func LeafName(pid int) (string, error) {
	st, err := procstat.Read(pid)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d-%d", pid, st.StartTime), nil
}

// sigkillPending reports whether a SIGKILL is queued for pid: the OOM killer's victim carries
// one (mm/oom_kill.c sends SIGKILL to the thread group) until it has exited.
func sigkillPending(pid int) bool {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if !ok || (k != "ShdPnd" && k != "SigPnd") {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err == nil && mask&(1<<(9-1)) != 0 {
			return true
		}
	}
	return false
}

// describe reads what an event names about a process; ok=false when it was gone before the
// first read. Identity (stat), comm and RSS come first, from files that take no lock on the
// process's memory map. The command line comes last: reading it takes the target's mmap_lock
// (fs/proc/base.c, get_mm_cmdline → access_remote_vm), and the process about to be OOM-killed
// holds that lock for read while it reclaims inside its page faults; once one of its threads
// waits to write (the Go runtime mapping more heap), every new reader, ours too, waits behind it
// until the kill. A process that dies meanwhile keeps what was read: seen once under VM soak, a
// balloon whose first look ended that way was never named.
func describe(pid int) (v Victim, ok bool) {
	st, err := procstat.Read(pid)
	if err != nil {
		return v, false
	}
	v.PID, v.start = pid, st.StartTime
	v.Comm, v.RSS = comm(pid, ""), rss(pid)
	if p, err := process.NewProcess(int32(pid)); err == nil {
		v.Cmdline, _ = p.Cmdline()
	}
	return v, true
}

// rss reads a process's resident set size, 0 when it is gone. It is on the hot path (every
// PlaceInterval near a limit, for every workload process, on the same goroutine that must
// answer an OOM kill within milliseconds), so it reads /proc/PID/statm once (proc(5): size
// resident ... in pages) instead of going through gopsutil's several files per process.
func rss(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}

// comm reads /proc/PID/comm, or returns old when the process is gone.
func comm(pid int, old string) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return old
	}
	return strings.TrimSuffix(string(b), "\n")
}

// setOOMScoreAdj writes /proc/PID/oom_score_adj. Raising it needs no privilege; the OOM killer
// then prefers the process over everything with a lower value (proc(5)), within a cgroup OOM
// too: the score is RSS+swap+page tables plus adj/1000 of the cgroup's limit.
func setOOMScoreAdj(pid, adj int) error {
	p := "/proc/" + strconv.Itoa(pid) + "/oom_score_adj"
	if err := os.WriteFile(p, []byte(strconv.Itoa(adj)), 0); err != nil {
		return &Error{Path: p, Value: strconv.Itoa(adj), Err: err}
	}
	return nil
}
