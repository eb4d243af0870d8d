package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"t3-supervise/internal/procstat"
)

// maxComm is the longest process name the kernel keeps (TASK_COMM_LEN 16, with the NUL).
const maxComm = 15

// checkComm rejects a name the kernel would truncate or the agent protocol could not carry.
func checkComm(name string) error {
	if name == "" || len(name) > maxComm || strings.ContainsAny(name, " \t\r\n/") {
		return fmt.Errorf("comm %q: want 1..%d bytes without blanks or slashes", name, maxComm)
	}
	return nil
}

// setComm renames this process as /proc/PID/comm, ps and the kernel's OOM report show it
// (prctl(2) PR_SET_NAME). PR_SET_NAME names only the calling thread, and the process's comm is
// the main thread's: it must be called from main (see init). Threads the Go runtime started
// earlier are renamed through /proc/self/task/TID/comm (proc(5)) so `ps -L` agrees.
func setComm(name string) error {
	if err := checkComm(name); err != nil {
		return err
	}
	if tid, pid := unix.Gettid(), os.Getpid(); tid != pid {
		return fmt.Errorf("set comm %q: on thread %d, not the main thread %d", name, tid, pid)
	}
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return fmt.Errorf("set comm %q: %w", name, err)
	}
	err = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(p)), 0, 0, 0)
	runtime.KeepAlive(p)
	if err != nil {
		return fmt.Errorf("prctl PR_SET_NAME %q: %w", name, err)
	}
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, t := range tasks {
		if t.Name() != strconv.Itoa(os.Getpid()) {
			_ = os.WriteFile(filepath.Join("/proc/self/task", t.Name(), "comm"), []byte(name), 0)
		}
	}
	return nil
}

// procRef names one process for good: a pid alone may be reused after the process is reaped.
type procRef struct {
	PID   int
	Start uint64
}

// refOf records pid's start time; a process that is already gone gets start 0 and counts as
// dead from then on.
func refOf(pid int) procRef {
	st, err := procstat.Read(pid)
	if err != nil {
		return procRef{PID: pid}
	}
	return procRef{PID: pid, Start: st.StartTime}
}

// alive reports whether the process still runs: it exists, is not a zombie, and is the same
// process (same start time) that was recorded.
func (r procRef) alive() bool {
	st, err := procstat.Read(r.PID)
	return err == nil && r.Start != 0 && st.StartTime == r.Start && st.State != 'Z' && st.State != 'X'
}

// selfCgroup is this process's cgroup v2 path ("0::" line of /proc/self/cgroup), or on a v1
// host the first line's path; "?" if unreadable.
func selfCgroup() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "?"
	}
	first := "?"
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			return parts[2]
		}
		if i == 0 {
			first = parts[2]
		}
	}
	return first
}

// selfOOMScoreAdj is /proc/self/oom_score_adj, or "?".
func selfOOMScoreAdj() string {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// anonMemory holds anonymous mappings so they stay resident; they are never unmapped.
type anonMemory struct {
	mu      sync.Mutex
	regions [][]byte
	total   int64
}

// grow maps n more bytes of private anonymous memory and writes one non-zero byte in every page,
// so each page is faulted in and counted in RssAnon (a read would map the shared zero page).
func (m *anonMemory) grow(n int64) error {
	b, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("mmap %d bytes: %w", n, err)
	}
	page := os.Getpagesize()
	for i := 0; i < len(b); i += page {
		b[i] = 0xa5
	}
	m.mu.Lock()
	m.regions = append(m.regions, b)
	m.total += n
	m.mu.Unlock()
	return nil
}

// size is the bytes held so far.
func (m *anonMemory) size() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.total
}
