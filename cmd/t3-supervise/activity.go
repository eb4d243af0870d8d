//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

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
		ev.emit(evCgroupWarning, nil, "reading the agents' CPU time: %v", err)
	}
	s.observe(now, leaves)
	if s.path != "" {
		if err := writeActivity(s.path, s.record()); err != nil && !s.warned {
			s.warned = true
			ev.emit(evCgroupWarning, nil, "keeping the agents' activity for status: %v", err)
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

// writeActivity replaces path atomically (a temp file renamed over it): `status` never reads
// half a record.
func writeActivity(path string, r activityRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// maxActivityFile bounds what `status` reads of activityFile.
const maxActivityFile = 1 << 20

// readActivity reads the supervisor's activityFile. `status` may run as root, and the runtime
// directory is the user's: the file is opened without following a symlink and without blocking
// on a FIFO, read only if it is a regular file, and at most maxActivityFile bytes.
func readActivity(path string) (*activityRecord, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxActivityFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxActivityFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxActivityFile)
	}
	var r activityRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Time.IsZero() {
		return nil, errors.New(path + ": no sample time")
	}
	return &r, nil
}
