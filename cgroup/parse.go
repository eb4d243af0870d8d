package cgroup

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// SelfCgroup is what /proc/self/cgroup says about a process.
type SelfCgroup struct {
	// Path is the process's cgroup in the unified (v2) hierarchy, e.g.
	// "/system.slice/system-t3x2dsupervise.slice/t3-supervise@alice.service".
	Path string
	// V1 lists the v1 hierarchies' controllers the process is also in (a hybrid or legacy host).
	V1 []string
}

// ParseProcCgroup parses /proc/PID/cgroup (cgroups(7), "/proc/[pid]/cgroup"): lines of
// "hierarchy-ID:controller-list:cgroup-path". On a pure cgroup v2 host there is exactly one line,
// "0::PATH". A v1 or hybrid host adds lines with a non-zero ID; a v1-only host has no "0::" line.
func ParseProcCgroup(r io.Reader) (SelfCgroup, error) {
	var sc SelfCgroup
	found := false
	s := bufio.NewScanner(r)
	for n := 1; s.Scan(); n++ {
		line := s.Text()
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return SelfCgroup{}, fmt.Errorf("line %d %q: want ID:CONTROLLERS:PATH", n, line)
		}
		id, err := strconv.Atoi(parts[0])
		if err != nil || id < 0 {
			return SelfCgroup{}, fmt.Errorf("line %d %q: bad hierarchy id", n, line)
		}
		if !strings.HasPrefix(parts[2], "/") {
			return SelfCgroup{}, fmt.Errorf("line %d %q: path is not absolute", n, line)
		}
		if id == 0 {
			if parts[1] != "" {
				return SelfCgroup{}, fmt.Errorf("line %d %q: the unified hierarchy lists no controllers", n, line)
			}
			if found {
				return SelfCgroup{}, fmt.Errorf("line %d %q: a second unified hierarchy line", n, line)
			}
			if strings.HasSuffix(parts[2], " (deleted)") {
				return SelfCgroup{}, fmt.Errorf("line %d %q: the cgroup was removed", n, line)
			}
			sc.Path, found = parts[2], true
			continue
		}
		if parts[1] != "" {
			sc.V1 = append(sc.V1, parts[1])
		}
	}
	if err := s.Err(); err != nil {
		return SelfCgroup{}, err
	}
	if !found {
		return SelfCgroup{}, fmt.Errorf("no cgroup v2 (0::) line: a cgroup v1 host")
	}
	return sc, nil
}

// MemoryEvents are the counters of a cgroup's memory.events (cgroup-v2.rst, "memory.events").
// They are hierarchical: a parent's counters include its descendants'.
type MemoryEvents struct {
	Low, High, Max, OOM, OOMKill, OOMGroupKill uint64
}

// ParseMemoryEvents parses memory.events. Unknown keys are ignored (kernels add them); a line
// that is not "key count" is an error.
func ParseMemoryEvents(r io.Reader) (MemoryEvents, error) {
	var ev MemoryEvents
	err := parseFlatKeyed(r, func(k string, v uint64) {
		switch k {
		case "low":
			ev.Low = v
		case "high":
			ev.High = v
		case "max":
			ev.Max = v
		case "oom":
			ev.OOM = v
		case "oom_kill":
			ev.OOMKill = v
		case "oom_group_kill":
			ev.OOMGroupKill = v
		}
	})
	return ev, err
}

// parseFlatKeyed reads "key value" lines (cgroup-v2.rst, "Flat keyed").
func parseFlatKeyed(r io.Reader, f func(string, uint64)) error {
	s := bufio.NewScanner(r)
	for n := 1; s.Scan(); n++ {
		fields := strings.Fields(s.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return fmt.Errorf("line %d %q: want KEY VALUE", n, s.Text())
		}
		v, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			return fmt.Errorf("line %d %q: %w", n, s.Text(), err)
		}
		f(fields[0], v)
	}
	return s.Err()
}

// Pressure is one line of a PSI file: the share of wall time in which some (or all) tasks of
// the cgroup were stalled on memory (Documentation/accounting/psi.rst).
type Pressure struct {
	Avg10, Avg60, Avg300 float64
	Total                uint64 // cumulative stall time, microseconds
}

// ParsePressure parses memory.pressure: a "some" line and, since Linux 5.13 for the root too,
// a "full" line.
func ParsePressure(r io.Reader) (some, full Pressure, err error) {
	s := bufio.NewScanner(r)
	for n := 1; s.Scan(); n++ {
		fields := strings.Fields(s.Text())
		if len(fields) == 0 {
			continue
		}
		var p Pressure
		for _, kv := range fields[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return some, full, fmt.Errorf("line %d %q: want key=value", n, s.Text())
			}
			var perr error
			switch k {
			case "avg10":
				p.Avg10, perr = strconv.ParseFloat(v, 64)
			case "avg60":
				p.Avg60, perr = strconv.ParseFloat(v, 64)
			case "avg300":
				p.Avg300, perr = strconv.ParseFloat(v, 64)
			case "total":
				p.Total, perr = strconv.ParseUint(v, 10, 64)
			}
			if perr != nil {
				return some, full, fmt.Errorf("line %d %q: %w", n, s.Text(), perr)
			}
		}
		switch fields[0] {
		case "some":
			some = p
		case "full":
			full = p
		default:
			return some, full, fmt.Errorf("line %d %q: want some or full", n, s.Text())
		}
	}
	return some, full, s.Err()
}

// CPUStat is the part of a cgroup's cpu.stat that tells how much CPU it used (cgroup-v2.rst,
// "cpu.stat"). It is hierarchical and cumulative: a cgroup's usage includes its descendants',
// also those removed since. The usage_usec, user_usec and system_usec lines are there whether
// or not the cpu controller is enabled (they come from the cgroup core's rstat, not from the
// controller): on a hybrid host the unified hierarchy has them too.
type CPUStat struct {
	UsageUSec, UserUSec, SystemUSec uint64
}

// ParseCPUStat parses cpu.stat. Unknown keys (the cpu controller's nr_periods, throttled_usec,
// ...) are ignored; a file without usage_usec is an error: not a cgroup v2 cpu.stat.
func ParseCPUStat(r io.Reader) (CPUStat, error) {
	var st CPUStat
	seen := false
	err := parseFlatKeyed(r, func(k string, v uint64) {
		switch k {
		case "usage_usec":
			st.UsageUSec, seen = v, true
		case "user_usec":
			st.UserUSec = v
		case "system_usec":
			st.SystemUSec = v
		}
	})
	if err == nil && !seen {
		err = fmt.Errorf("no usage_usec line")
	}
	return st, err
}
