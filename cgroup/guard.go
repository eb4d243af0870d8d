package cgroup

import (
	"strconv"
	"strings"
)

// Limit files drift. The user owns every file of the delegated subtree (police_linux.go), so an
// agent can write `max` into workload/memory.max, agents/memory.high or memory.swap.max, or take
// the memory controller out of a cgroup.subtree_control (which drops the memory.* files of the
// cgroups below, back to their defaults when it is enabled again), and escape every workload
// limit. The kernel cannot stop it while the supervisor and the agents are one uid, so the watch
// reads back the few files the plan wrote, and restores any drift: at once when one is written
// or chmod'ed (inotify, look_linux.go), and at the sweep every second.

// Guarded are the writes of steps that the watch keeps in place: every OpWrite with a value,
// in plan order, so that a cgroup.subtree_control comes before the limit files it makes.
func Guarded(steps []Step) []Step {
	var out []Step
	for _, s := range steps {
		if s.Op == OpWrite && s.Value != "" {
			out = append(out, s)
		}
	}
	return out
}

// Drift compares what the file of s reads (got) with the value the plan wrote (s.Value), and
// returns what to write back: "" when the file holds the planned value.
//
// cgroup.subtree_control reads as the enabled controllers ("memory pids"): a planned "+c" that
// is missing is drift (one enabled beyond the plan is not: it loosens no limit). Memory sizes
// read back rounded down to whole pages (page_counter_memparse in mm/page_counter.c), so the
// planned byte count is compared so rounded. Anything unreadable is drift.
func Drift(s Step, got string, pageSize int64) string {
	got = strings.TrimSpace(got)
	if s.File == "cgroup.subtree_control" {
		var have []string
		for _, c := range strings.Fields(got) {
			// The kernel lists names; a plain file (the unit tests' fake tree) keeps the "+".
			have = append(have, strings.TrimPrefix(c, "+"))
		}
		var missing []string
		for _, c := range strings.Fields(s.Value) {
			name, ok := strings.CutPrefix(c, "+")
			if ok && !contains(have, name) {
				missing = append(missing, c)
			}
		}
		return strings.Join(missing, " ")
	}
	if got == s.Value {
		return ""
	}
	if pageSize > 0 && isMemorySize(s.File) && s.Value != "max" {
		want, err1 := strconv.ParseInt(s.Value, 10, 64)
		have, err2 := strconv.ParseInt(got, 10, 64)
		if err1 == nil && err2 == nil && have == want/pageSize*pageSize {
			return ""
		}
	}
	return s.Value
}

// isMemorySize: the memory.* files that hold a byte count (memory.oom.group holds a flag).
func isMemorySize(file string) bool {
	switch file {
	case "memory.max", "memory.high", "memory.low", "memory.min", "memory.swap.max", "memory.swap.high":
		return true
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
