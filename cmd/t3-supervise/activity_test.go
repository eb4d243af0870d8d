//go:build linux

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"t3-supervise/cgroup"
)

// The supervisor's verdict reaches status through activity.json: busy is then the verdict, not
// the presence of a process; a missing, stale or unsafe file leaves presence in charge.
func TestStatusTakesBusyFromTheSupervisorsActivity(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(2_000_000, 0)
	s := &activityState{a: cgroup.Activity{Policy: cgroup.DefaultActivity}, path: filepath.Join(dir, activityFile)}
	// An open session idling for two minutes: idle, though its leaf holds claude.
	for i := 0; i <= 24; i++ {
		s.observe(now.Add(time.Duration(i-24)*activityInterval), []cgroup.LeafCPU{{Leaf: "100-5", Usage: time.Second + time.Duration(i)*10*time.Millisecond}})
	}
	rep := func(at time.Time) statusReport {
		r := statusReport{Status: &cgroup.Status{Busy: true, Agents: []cgroup.AgentStatus{{Leaf: "100-5"}}}}
		applyActivity(&r, dir, os.Getuid(), at)
		return r
	}
	if err := writeFileAtomic(s.path, s.record()); err != nil {
		t.Fatal(err)
	}
	if r := rep(now.Add(activityInterval)); r.Busy || r.BusyBasis != "activity" || r.Activity == nil {
		t.Errorf("fresh idle verdict: busy %v basis %q", r.Busy, r.BusyBasis)
	}
	var out bytes.Buffer
	printStatus(&out, rep(now.Add(activityInterval)))
	if !strings.Contains(out.String(), "idle since") || !strings.Contains(out.String(), "(idle)") {
		t.Errorf("text status:\n%s", out.String())
	}
	if r := rep(now.Add(activityStale + 2*activityInterval)); !r.Busy || r.BusyBasis != "presence" || r.Activity != nil {
		t.Errorf("stale verdict: busy %v basis %q, want presence", r.Busy, r.BusyBasis)
	}
	// A symlink or a FIFO in the user's runtime directory is not read (status may run as root).
	link := t.TempDir()
	os.Symlink(s.path, filepath.Join(link, activityFile))
	r := statusReport{Status: &cgroup.Status{Busy: true}}
	if applyActivity(&r, link, os.Getuid(), now); r.BusyBasis != "presence" {
		t.Errorf("followed a symlink: %+v", r)
	}
	fifo := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(fifo, activityFile), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan statusReport)
	go func() {
		r := statusReport{Status: &cgroup.Status{Busy: true}}
		applyActivity(&r, fifo, os.Getuid(), now)
		done <- r
	}()
	select {
	case r := <-done:
		if r.BusyBasis != "presence" {
			t.Errorf("read a FIFO: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("status hangs on a FIFO")
	}
}

// The supervisor judges every sample and keeps since when the verdict holds.
func TestActivityStateSince(t *testing.T) {
	s := &activityState{a: cgroup.Activity{Policy: cgroup.ActivityPolicy{Window: 10 * time.Second, CPU: 100 * time.Millisecond}}}
	t0 := time.Unix(3_000_000, 0)
	add := func(i int, ms int) cgroup.Verdict {
		s.observe(t0.Add(time.Duration(i)*time.Second), []cgroup.LeafCPU{{Leaf: "1-1", Usage: time.Duration(ms) * time.Millisecond}})
		return s.last
	}
	for i := 0; i < 12; i++ {
		add(i, 0)
	}
	if s.last.Busy || !s.since.Equal(t0) {
		t.Fatalf("idle from the start: busy %v since %v", s.last.Busy, s.since)
	}
	if v := add(12, 500); !v.Busy || !s.since.Equal(t0.Add(12*time.Second)) {
		t.Fatalf("busy at 12s: %+v since %v", v, s.since)
	}
	if r := s.record(); !r.Busy || len(r.Leaves) != 1 || r.Leaves[0].WindowUSec != 500_000 || r.Policy.CPUUSec != 100_000 {
		t.Errorf("record %+v", r)
	}
}
