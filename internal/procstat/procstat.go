// Package procstat parses /proc/PID/stat (proc(5)), the one parser of it in the module.
//
// Why not a library: gopsutil v4's process package (the module's, process_linux.go,
// fillFromTIDStatWithContext) parses the same file but returns only the parent pid, the
// terminal, utime and stime as float seconds, and the start time converted to wall-clock
// milliseconds through the boot time; it exposes neither the kernel's flags word (PF_EXITING:
// is a victim already dying), nor the children's times cutime and cstime (an agent tree's CPU
// without a cgroup), nor the raw start time in clock ticks that, with the pid, names one process
// across pid reuse (and names agent leaves, so the shim and the watch must agree on it to the
// tick). Where gopsutil's answer suffices (a process's own utime+stime, its command line), the
// module uses gopsutil.
//
// The format: "pid (comm) state ppid pgrp session ...". comm, field 2, is the process's name as
// it set it (prctl PR_SET_NAME), up to 15 bytes of anything but NUL: blanks and parentheses
// included. So comm runs from the first '(' to the last ')', and the fields are counted from
// there.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// UserHZ is the unit of the times in /proc/PID/stat: USER_HZ, 100 on every Linux architecture
// the supervisor is built for (sysconf(_SC_CLK_TCK); proc(5)).
const UserHZ = 100

// PFExiting is PF_EXITING (include/linux/sched.h): set when the task enters do_exit.
const PFExiting = 0x4

// Stat is what the module reads of /proc/PID/stat, fields as proc(5) numbers them.
type Stat struct {
	PID     int    // (1)
	Comm    string // (2), without the parentheses
	State   byte   // (3) R, S, D, Z, X, ...
	PPID    int    // (4)
	PGRP    int    // (5)
	Session int    // (6)
	Flags   uint64 // (9) the kernel's PF_* flags of the task
	UTime   uint64 // (14) clock ticks (UserHZ) in user mode
	STime   uint64 // (15) clock ticks in kernel mode
	CUTime  int64  // (16) the waited-for children's user time; signed (long) in proc(5)
	CSTime  int64  // (17) the waited-for children's kernel time
	// StartTime (22) is clock ticks after boot: with the pid, a process's identity for good.
	StartTime uint64
}

// Dying: the process has begun to exit (PF_EXITING) or is a zombie. An OOM victim spends a
// while there, freeing its memory, between taking its SIGKILL (no longer pending) and becoming a
// zombie.
func (s Stat) Dying() bool { return s.State == 'Z' || s.State == 'X' || s.Flags&PFExiting != 0 }

// Read reads and parses /proc/PID/stat. A process that is gone is an error wrapping
// fs.ErrNotExist (or ESRCH, read mid-exit).
func Read(pid int) (Stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	return Parse(b)
}

// Parse parses the contents of /proc/PID/stat. It wants the fields up to starttime (22) at
// least; every kernel since 2.6 writes 52.
func Parse(b []byte) (Stat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return Stat{}, fmt.Errorf("stat %q: no (comm)", b)
	}
	f := strings.Fields(string(b[end+1:]))
	// After comm: f[0] is field 3, so field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("stat %q: %d fields after comm, want 20 or more", b, len(f))
	}
	st := Stat{Comm: string(b[open+1 : end]), State: f[0][0]}
	var err error
	num := func(field int, dst any) {
		if err != nil {
			return
		}
		s := f[field-3]
		var e error
		switch d := dst.(type) {
		case *int:
			*d, e = strconv.Atoi(s)
		case *uint64:
			*d, e = strconv.ParseUint(s, 10, 64)
		case *int64:
			*d, e = strconv.ParseInt(s, 10, 64)
		}
		if e != nil {
			err = fmt.Errorf("stat field %d %q: %w", field, s, e)
		}
	}
	if st.PID, err = strconv.Atoi(strings.TrimSpace(string(b[:open]))); err != nil {
		return Stat{}, fmt.Errorf("stat pid %q: %w", b[:open], err)
	}
	num(4, &st.PPID)
	num(5, &st.PGRP)
	num(6, &st.Session)
	num(9, &st.Flags)
	num(14, &st.UTime)
	num(15, &st.STime)
	num(16, &st.CUTime)
	num(17, &st.CSTime)
	num(22, &st.StartTime)
	if err != nil {
		return Stat{}, err
	}
	return st, nil
}
