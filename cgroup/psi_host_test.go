//go:build linux

package cgroup

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The PSI trigger on a real cgroup2 hierarchy, as root (privileged: any window from 500 ms): the
// watch arms it on agents/ and says so, --psi-trigger off and a too short window sample instead,
// and the dry run's probe says the same and leaves no cgroup behind. The unprivileged rules and
// the trigger firing under real memory pressure are the VM tier's (test/vm/scenarios).
func TestPSIModeOnTheHost(t *testing.T) {
	tree := hostTree(t)
	if err := tree.PressureAvailable(AgentsDir); err != nil {
		t.Skipf("no PSI on this host: %v", err) // the watch says PressureUnavailable; TestNoPSIIsSaid
	}
	oneSecond, oneSecondReason, threeSeconds := PSISampling, "invalid argument); --pressure-window 1s is shorter than the 2 s", `"some 500000 2000000"`
	if capSysResource(t) {
		oneSecond, oneSecondReason, threeSeconds = PSITrigger, `"some 250000 1000000"`, `"some 750000 3000000"`
	}
	cfg := WatchConfig{Limits: defaultLimits(t), PressureWindow: 10 * time.Second, PressureStall: 0.25}
	for _, tc := range []struct {
		name   string
		change func(c *WatchConfig)
		mode   string
		reason string
	}{
		{"default", func(*WatchConfig) {}, PSITrigger, `"some 2500000 10000000" on workload/agents/memory.pressure`},
		// 1 s: only a writer with CAP_SYS_RESOURCE gets it (a sandbox's root may lack it).
		{"1s", func(c *WatchConfig) { c.PressureWindow = time.Second }, oneSecond, oneSecondReason},
		// 3 s: privileged as asked, else the 2 s below it.
		{"3s", func(c *WatchConfig) { c.PressureWindow = 3 * time.Second }, PSITrigger, threeSeconds},
		{"off", func(c *WatchConfig) { c.PSITriggerOff = true }, PSISampling, "--psi-trigger off"},
		{"too short", func(c *WatchConfig) { c.PressureWindow = 300 * time.Millisecond }, PSISampling, "500 ms"},
	} {
		c := cfg
		tc.change(&c)
		// The watch's own choice (Watch itself needs memory.events, which a hybrid host's v2
		// hierarchy lacks: no memory controller there).
		fd, got := tree.choosePSI(AgentsDir, c)
		if (fd >= 0) != (tc.mode == PSITrigger) {
			t.Errorf("%s: fd %d in mode %s", tc.name, fd, got.Mode)
		}
		if fd >= 0 {
			unix.Close(fd)
		}
		if got.Mode != tc.mode || !strings.Contains(got.Reason, tc.reason) {
			t.Errorf("%s: the watch chose %+v, want mode %s with %q", tc.name, got, tc.mode, tc.reason)
		}
		probe := tree.ProbePSI(c)
		if probe.Mode != tc.mode || !strings.Contains(probe.Reason, tc.reason) {
			t.Errorf("%s: the dry run's probe said %+v, want mode %s with %q", tc.name, probe, tc.mode, tc.reason)
		}
	}
	// The poller ends when the watch does, and the trigger's file is closed with it.
	w := newWatcher(tree, cfg)
	w.psi = w.startPSI(context.Background())
	if w.psi == nil {
		t.Fatalf("no trigger armed: %v", <-w.out)
	}
	if m := (<-w.out).(PressureMode); m.Mode != PSITrigger {
		t.Errorf("the watch said %+v first", m)
	}
	stopped := make(chan struct{})
	go func() { w.stopPSI(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the trigger's poller did not stop")
	}
	left, _ := filepath.Glob(tree.Dir(".t3-supervise-psi-probe-*"))
	if len(left) > 0 {
		t.Errorf("the probe left %v", left)
	}
	if _, err := os.Stat(tree.Dir(AgentsDir)); err != nil {
		t.Errorf("agents/: %v", err)
	}
}

// capSysResource reports whether this process has CAP_SYS_RESOURCE in its effective set: what
// the kernel asks of a PSI trigger's writer for windows that are no multiple of 2 s.
func capSysResource(t *testing.T) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	return data[unix.CAP_SYS_RESOURCE/32].Effective&(1<<(unix.CAP_SYS_RESOURCE%32)) != 0
}
