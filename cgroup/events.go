package cgroup

import (
	"time"
)

// The events of the watch (Tree.Watch). To add one,
// declare it here with its cgroupEvent method, send it from the watch, and map it to the
// supervisor's event in cmd/t3-supervise (emitCgroupEvent).

// Event is something the watch saw or did. Each becomes one journald entry upstream.
type Event interface{ cgroupEvent() }

// AgentPlaced: a new agent process tree got its own leaf.
type AgentPlaced struct {
	Leaf string
	PID  int
	Comm string
	Via  string // "shim" (it moved itself), "watch" (moved out of server/), "other" (a leaf made by someone else)
}

// LeafRemoved: an agent leaf emptied and was removed.
type LeafRemoved struct{ Leaf string }

// OOMKill: the kernel's OOM killer killed a process in the workload.
type OOMKill struct {
	Victim Victim
	Known  bool   // false when the victim could not be identified (then only the counter moved)
	Count  uint64 // workload memory.events oom_kill after this kill
	// Seen is CLOCK_MONOTONIC when the watch read the moved counter: with the kernel's own
	// timestamp of the kill it splits the event's latency into noticing and reporting.
	Seen time.Duration
	// Held is how long after Seen the victim was found (by a later look, 0: at once), or the
	// report without one was given up on: the kernel counts the kill before it signals the
	// victim (oom_linux.go, oomHold).
	Held time.Duration
}

// PressureKill: the supervisor ended the largest agent process on sustained memory pressure.
type PressureKill struct {
	Victim Victim
	Signal string  // the signal that ended it: SIGTERM, or SIGKILL after the grace period
	Stall  float64 // share of wall time agents/ was stalled on memory over the window
	Window time.Duration
}

// Warning: something in the watch failed; it keeps going.
type Warning struct{ Err error }

// PressureUnavailable: the pressure kill is configured but agents/memory.pressure cannot be
// read (a kernel without CONFIG_PSI, or booted with psi=0): only memory.max's OOM kill ends a
// runaway, after memory.high has throttled it for as long as it takes (the 2026-07-02 livelock).
type PressureUnavailable struct{ Err error }

func (PressureUnavailable) cgroupEvent() {}

func (AgentPlaced) cgroupEvent() {}

func (LeafRemoved) cgroupEvent() {}

func (OOMKill) cgroupEvent() {}

func (PressureKill) cgroupEvent() {}

func (Warning) cgroupEvent() {}

// ServerFound: t3's direct child does not listen on t3's port itself (a wrapper that does not
// exec: a shell script, a version manager's shim); the process that does is the server, and it
// stays in server/ with every process between it and the direct child.
type ServerFound struct {
	PID         int // the process listening on Port
	Comm        string
	Wrapper     int // the supervisor's direct child
	WrapperComm string
	Port        int
}

func (ServerFound) cgroupEvent() {}

// StrayKilled: a process was found where no process of the workload may be, supervisor/ or a
// cgroup of the subtree that the supervisor did not make, and was killed.
type StrayKilled struct {
	Victim Victim
	Cgroup string // where it was, relative to the unit's cgroup
}

func (StrayKilled) cgroupEvent() {}

// LimitRestored: a limit file the plan wrote (or an agent leaf's) held another value, which
// someone of the user's wrote there; the watch wrote the planned value back.
type LimitRestored struct {
	File     string // relative to the unit's cgroup, e.g. "workload/memory.max"
	Found    string // what it read
	Restored string // what the watch wrote
}

func (LimitRestored) cgroupEvent() {}

// Victim is a process the kernel or the supervisor killed.
type Victim struct {
	PID     int    `json:"pid"`
	Comm    string `json:"comm"`
	Cmdline string `json:"cmdline"`
	RSS     uint64 `json:"rss"` // bytes, at the last sample before its death
	Leaf    string `json:"leaf"`
	start   uint64
}

// Kill is what every kill event says alike, for a log of kills: its readers take it from
// KillEvent instead of switching on each kind.
type Kill struct {
	Kind   string // as the supervisor's journal names the event: oom_kill, pressure_kill, stray_killed
	Kernel bool   // the kernel's OOM killer did it; else the supervisor
	Signal string // the signal that ended the victim
	Victim Victim
}

// KillEvent is an event that reports a killed process: OOMKill, PressureKill, StrayKilled.
type KillEvent interface {
	Event
	Kill() Kill
}

func (e OOMKill) Kill() Kill {
	return Kill{Kind: "oom_kill", Kernel: true, Signal: "SIGKILL", Victim: e.Victim}
}

func (e PressureKill) Kill() Kill {
	return Kill{Kind: "pressure_kill", Signal: e.Signal, Victim: e.Victim}
}

func (e StrayKilled) Kill() Kill {
	return Kill{Kind: "stray_killed", Signal: "SIGKILL", Victim: e.Victim}
}
