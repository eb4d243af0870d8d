//go:build linux

package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"t3-supervise/cgroup"
)

// activityInterval is how often the agents' CPU time is sampled: a dozen samples per default
// --busy-window, one small read per agent leaf each.
const activityInterval = 5 * time.Second

// activityFile is where the supervisor keeps its last judgement of the agents' activity in its
// runtime directory, for `status` (which cannot judge a window from one look).
const activityFile = "activity.json"

// activityRecord is activityFile: the verdict of cgroup.Judge, its policy and since when it holds.
type activityRecord struct {
	Time   time.Time        `json:"time"` // of the last sample
	Busy   bool             `json:"busy"`
	Since  time.Time        `json:"since"` // when the agents last turned busy or idle (or the supervisor started)
	Policy activityPolicy   `json:"policy"`
	Young  int              `json:"young_leaves"`
	Leaves []activityOfLeaf `json:"leaves"`
}

type activityPolicy struct {
	CPUUSec    int64   `json:"cpu_usec"`
	WindowSec  float64 `json:"window_sec"`
	MinAgeSec  float64 `json:"min_age_sec"`
	SampledSec float64 `json:"sample_interval_sec"`
}

type activityOfLeaf struct {
	Leaf       string  `json:"leaf"`
	WindowUSec int64   `json:"cpu_usec_in_window"`
	AgeSec     float64 `json:"age_sec"`
	Young      bool    `json:"young"`
	Active     bool    `json:"active"`
}

// activityState samples the agents' CPU time (cpu.stat of each leaf, or /proc without a cgroup)
// and keeps the verdict the when-idle gate and `status` use.
type activityState struct {
	a         cgroup.Activity
	tree      *cgroup.Tree
	serverPID int
	path      string // "" without a runtime directory
	last      cgroup.Verdict
	since     time.Time
	warned    bool
}

func newActivityState(cfg *config, tree *cgroup.Tree, serverPID int) *activityState {
	s := &activityState{a: cgroup.Activity{Policy: cfg.Activity}, tree: tree, serverPID: serverPID}
	if cfg.RuntimeDir != "" {
		s.path = filepath.Join(cfg.RuntimeDir, activityFile)
	}
	return s
}

// sample reads the agents once, judges, and publishes the verdict.
func (s *activityState) sample(ev *events, now time.Time) {
	var leaves []cgroup.LeafCPU
	var err error
	if s.tree != nil {
		leaves, err = s.tree.AgentCPU()
	} else {
		leaves, err = cgroup.ProcessTreeCPU(s.serverPID)
	}
	if err != nil && !s.warned {
		// Once per run: the judgement goes on with what could be read.
		s.warned = true
		ev.emit(CgroupWarningEvent{Err: fmt.Errorf("reading the agents' CPU time: %w", err)})
	}
	s.observe(now, leaves)
	if s.path != "" {
		if err := writeFileAtomic(s.path, s.record()); err != nil && !s.warned {
			s.warned = true
			ev.emit(CgroupWarningEvent{Err: fmt.Errorf("keeping the agents' activity for status: %w", err)})
		}
	}
}

// observe judges a new sample, and notes since when the verdict holds.
func (s *activityState) observe(now time.Time, leaves []cgroup.LeafCPU) {
	s.a.Add(cgroup.CPUSample{At: now, Leaves: leaves})
	v := s.a.Verdict()
	if s.since.IsZero() || v.Busy != s.last.Busy {
		s.since = now
	}
	s.last = v
}

func (s *activityState) verdict() cgroup.Verdict { return s.last }

func (s *activityState) record() activityRecord {
	p := s.a.Policy
	r := activityRecord{Time: s.last.At, Busy: s.last.Busy, Since: s.since, Young: s.last.Young, Leaves: []activityOfLeaf{},
		Policy: activityPolicy{CPUUSec: p.CPU.Microseconds(), WindowSec: p.Window.Seconds(), MinAgeSec: p.MinAge.Seconds(),
			SampledSec: activityInterval.Seconds()}}
	for _, l := range s.last.Leaves {
		r.Leaves = append(r.Leaves, activityOfLeaf{Leaf: l.Leaf, WindowUSec: l.CPU.Microseconds(), AgeSec: l.Age.Round(time.Second).Seconds(),
			Young: l.Young, Active: l.Active})
	}
	return r
}

// readActivity reads the supervisor's activityFile in the runtime directory dir.
func readActivity(dir string, uid int) (*activityRecord, error) {
	var r activityRecord
	if err := readRuntimeJSON(dir, activityFile, uid, &r); err != nil {
		return nil, err
	}
	if r.Time.IsZero() {
		return nil, errors.New(filepath.Join(dir, activityFile) + ": no sample time")
	}
	return &r, nil
}
