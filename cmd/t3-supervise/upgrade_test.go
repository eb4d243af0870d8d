//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"t3-supervise/cgroup"
)

// The decision, reading by reading, on its own clock: a move waits while agents work and for
// --rotation-idle after the last one, counts idleness from before the replacement, follows
// --restart-on-upgrade, an operator's request, and never restarts into a binary that failed.
func TestUpgradeGate(t *testing.T) {
	type step struct {
		at                      time.Duration // since the first reading
		busy, stale, asked, bad bool
		young                   int // leaves too young to judge (cgroup.Verdict.Young)
		gone                    bool
		want                    upgradeDecision
	}
	const idle = time.Minute
	for _, tc := range []struct {
		name   string
		policy string
		steps  []step
	}{
		{"nothing to do", "when-idle", []step{
			{at: 0, want: upgradeNothing},
			{at: time.Hour, want: upgradeNothing},
		}},
		{"idle for long when replaced: at once", "when-idle", []step{
			{at: 0, want: upgradeNothing},
			{at: 2 * time.Minute, stale: true, want: upgradeNow},
		}},
		{"replaced while busy: waits for the agents, then --rotation-idle", "when-idle", []step{
			{at: 0, busy: true, want: upgradeNothing},
			{at: 5 * time.Second, busy: true, stale: true, want: upgradeWait},
			{at: 10 * time.Minute, busy: true, stale: true, want: upgradeWait},
			{at: 10*time.Minute + 5*time.Second, stale: true, want: upgradeWait}, // the agent just ended
			{at: 10*time.Minute + 64*time.Second, stale: true, want: upgradeWait},
			{at: 10*time.Minute + 65*time.Second, stale: true, want: upgradeNow},
		}},
		{"an agent in between restarts the idle clock", "when-idle", []step{
			{at: 0, stale: true, want: upgradeWait},
			{at: 50 * time.Second, busy: true, stale: true, want: upgradeWait},
			{at: 55 * time.Second, stale: true, want: upgradeWait},
			{at: 110 * time.Second, stale: true, want: upgradeWait},
			{at: 115 * time.Second, stale: true, want: upgradeNow},
		}},
		{"a young leaf holds the move back without restarting the idle clock", "when-idle", []step{
			{at: 0, want: upgradeNothing},
			{at: 50 * time.Second, stale: true, young: 1, want: upgradeWait}, // T3's account probe
			{at: 65 * time.Second, stale: true, young: 1, want: upgradeWait}, // idle long enough, but the probe is there
			{at: 70 * time.Second, stale: true, want: upgradeNow},            // the probe is gone: idle since 0
		}},
		{"never: a replaced binary stays until asked", "never", []step{
			{at: 0, stale: true, want: upgradeNothing},
			{at: time.Hour, stale: true, want: upgradeNothing},
			{at: time.Hour + time.Second, busy: true, stale: true, asked: true, want: upgradeWait},
			{at: time.Hour + 2*time.Second, stale: true, asked: true, want: upgradeWait},
			{at: time.Hour + 62*time.Second, stale: true, asked: true, want: upgradeNow},
		}},
		{"asked without a new binary: a restart when idle", "when-idle", []step{
			{at: 0, busy: true, asked: true, want: upgradeWait},
			{at: time.Minute, asked: true, want: upgradeWait},
			{at: 2 * time.Minute, asked: true, want: upgradeNow},
		}},
		{"nothing at the path: no restart, asked or not", "when-idle", []step{
			{at: 0, want: upgradeNothing},
			{at: time.Hour, gone: true, asked: true, want: upgradeNothing},
			{at: 2 * time.Hour, asked: true, want: upgradeNow},
		}},
		{"a broken binary is never restarted into, asked or not", "when-idle", []step{
			{at: 0, want: upgradeNothing},
			{at: time.Hour, stale: true, bad: true, want: upgradeNothing},
			{at: 2 * time.Hour, stale: true, bad: true, asked: true, want: upgradeNothing},
			{at: 3 * time.Hour, stale: true, asked: true, want: upgradeNow}, // another file came
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := upgradeGate{Policy: tc.policy, Idle: cgroup.IdleGate{Need: idle}}
			t0 := time.Unix(1_000_000, 0)
			for i, s := range tc.steps {
				got := g.decide(upgradeReading{Now: t0.Add(s.at), Activity: cgroup.Verdict{Busy: s.busy, Young: s.young}, Stale: s.stale, Requested: s.asked, Broken: s.bad, Missing: s.gone})
				if got != s.want {
					t.Fatalf("step %d (at %v, busy %v, young %d, stale %v, asked %v, broken %v): %v, want %v",
						i, s.at, s.busy, s.young, s.stale, s.asked, s.bad, got, s.want)
				}
			}
		})
	}
}

// observe takes the agents' verdicts busyNow and idleNow (rotation_test.go).

// upgradeWorld is an upgrader watching a binary in a temp dir, as if it ran from there.
type upgradeWorld struct {
	t    *testing.T
	dir  string
	u    *upgrader
	ev   *events
	rec  *recorder
	path string
}

func newUpgradeWorld(t *testing.T, policy string) *upgradeWorld {
	t.Helper()
	dir := t.TempDir()
	w := &upgradeWorld{t: t, dir: dir, path: filepath.Join(dir, "t3-supervise")}
	w.install(supervisorBin)
	cfg := &config{User: "alice", Upgrade: policy, Rotation: rotationConfig{Idle: time.Minute}, RuntimeDir: filepath.Join(dir, "run")}
	if err := os.MkdirAll(cfg.RuntimeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	w.u = newUpgrader(cfg)
	// As if this process ran w.path: the file there now is the running one.
	running, err := statID(w.path)
	if err != nil {
		t.Fatal(err)
	}
	w.u.path, w.u.running, w.u.seen = w.path, running, running
	w.u.dpkgDB = filepath.Join(dir, "no-dpkg") // not the host's
	w.ev, w.rec = recordEvents("alice")
	return w
}

// install puts a copy of from at the watched path by rename, as dpkg does.
func (w *upgradeWorld) install(from string) {
	w.t.Helper()
	tmp := w.path + ".dpkg-new"
	if err := copyFile(from, tmp); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Rename(tmp, w.path); err != nil {
		w.t.Fatal(err)
	}
}

func TestUpgraderWaitsForIdleThenMoves(t *testing.T) {
	w := newUpgradeWorld(t, "when-idle")
	t0 := time.Unix(1_000_000, 0)
	if w.u.observe(w.ev, t0, busyNow) || len(w.rec.all()) != 0 {
		t.Fatalf("the running file counted as a replacement: %+v", w.rec.all())
	}
	w.install(supervisorBin)
	if w.u.observe(w.ev, t0.Add(5*time.Second), busyNow) {
		t.Fatal("moved while an agent runs")
	}
	installed, err := statID(w.path)
	if err != nil {
		t.Fatal(err)
	}
	want := []event{
		BinaryReplacedEvent{Binary: w.path, RunningVersion: buildVersion(), RunningInode: w.u.running.Ino, InstalledInode: installed.Ino,
			Plan: "t3 and its agents keep running; the supervisor restarts onto it once the agents have been idle for 1m0s (by CPU time, --busy-cpu)"},
		UpgradePendingEvent{Binary: w.path, Busy: true, Why: "the agents are busy"},
	}
	if got := w.rec.all(); !reflect.DeepEqual(got, want) {
		t.Fatalf("a replaced binary while busy:\n got  %+v\n want %+v", got, want)
	}
	st := readBinaryState(w.u.cfg.RuntimeDir, os.Getuid(), 0)
	if st == nil || !st.BinaryStale || !st.UpgradePending || st.Binary != w.path || st.RunningVersion != buildVersion() {
		t.Fatalf("status reads %+v", st)
	}
	for i := 2; i < 20; i++ { // more busy ticks: still one upgrade_pending, no move
		if w.u.observe(w.ev, t0.Add(time.Duration(i)*5*time.Second), busyNow) {
			t.Fatal("moved while an agent runs")
		}
	}
	if got := w.rec.all(); !reflect.DeepEqual(got, want) {
		t.Errorf("more events for one wait:\n got  %+v\n want %+v", got, want)
	}
	t1 := t0.Add(100 * time.Second)
	if w.u.observe(w.ev, t1, idleNow) || w.u.observe(w.ev, t1.Add(59*time.Second), idleNow) {
		t.Fatal("moved before --rotation-idle passed")
	}
	if !w.u.observe(w.ev, t1.Add(time.Minute), idleNow) {
		t.Fatal("no move after a whole idle minute")
	}
	if want := binVersion(t, supervisorBin); w.u.installed != want {
		t.Errorf("installed version %q: want %q, what the new binary's version command printed", w.u.installed, want)
	}
	got := w.u.restartEvent(42, t1.Add(time.Minute))
	restart := UpgradeRestartEvent{PID: 42, ExitCode: 73, Binary: w.path, RunningVersion: buildVersion(),
		InstalledVersion: w.u.installed, Stale: true, IdleFor: time.Minute}
	if got != restart {
		t.Errorf("upgrade_restart:\n got  %+v\n want %+v", got, restart)
	}
}

// A file at the path that cannot run its version command is never restarted into; the next
// good file is.
func TestUpgraderRefusesABinaryThatDoesNotRun(t *testing.T) {
	w := newUpgradeWorld(t, "when-idle")
	t0 := time.Unix(1_000_000, 0)
	w.u.observe(w.ev, t0, idleNow)
	broken := filepath.Join(w.dir, "broken")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'segmentation fault'\nexit 139\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	w.install(broken)
	for i := 1; i < 5; i++ {
		if w.u.observe(w.ev, t0.Add(time.Duration(i)*time.Minute), idleNow) {
			t.Fatal("moved to a binary that does not run")
		}
	}
	if refused := eventsOf[UpgradeRefusedEvent](w.rec); len(refused) != 1 || refused[0].Binary != w.path || refused[0].Err == nil {
		t.Errorf("want one upgrade_refused naming %s and why: %+v", w.path, refused)
	}
	w.u.request(w.ev, syscall.SIGUSR2)
	if w.u.observe(w.ev, t0.Add(10*time.Minute), idleNow) {
		t.Fatal("an operator's request moved to a binary that does not run")
	}
	w.install(supervisorBin)
	if !w.u.observe(w.ev, t0.Add(11*time.Minute), idleNow) {
		t.Fatalf("no move to the good binary that came next: %+v", w.rec.all())
	}
}

// --restart-on-upgrade=never: a replaced binary is reported and stays until SIGUSR2.
func TestUpgraderNeverWaitsForAReload(t *testing.T) {
	w := newUpgradeWorld(t, "never")
	t0 := time.Unix(1_000_000, 0)
	w.install(supervisorBin)
	for i := 0; i < 5; i++ {
		if w.u.observe(w.ev, t0.Add(time.Duration(i)*time.Hour), idleNow) {
			t.Fatal("moved without being asked")
		}
	}
	if r := eventsOf[BinaryReplacedEvent](w.rec); len(r) != 1 || r[0].Plan != "no restart until an operator asks (--restart-on-upgrade=never; systemctl reload)" {
		t.Errorf("binary_replaced does not say it waits for a reload: %+v", r)
	}
	w.u.request(w.ev, syscall.SIGUSR2)
	asked := UpgradeRequestedEvent{Signal: "SIGUSR2", Binary: w.path, Stale: true, Onto: "the binary installed at " + w.path, Idle: time.Minute}
	if !slices.Contains(eventsOf[UpgradeRequestedEvent](w.rec), asked) || !w.u.observe(w.ev, t0.Add(5*time.Hour), idleNow) {
		t.Fatalf("no move after the request of an idle user: %+v", w.rec.all())
	}
}

func TestProbeVersion(t *testing.T) {
	dir := t.TempDir()
	for name, script := range map[string]string{
		"other program": "#!/bin/sh\necho 'GNU coreutils 9.1'\n",
		"no version":    "#!/bin/sh\necho t3-supervise\n",
		"fails":         "#!/bin/sh\necho 't3-supervise 1.0-1'\nexit 3\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if v, err := probeVersion(p); err == nil {
			t.Errorf("%s: version %q accepted", name, v)
		}
	}
	if v, err := probeVersion(supervisorBin); err != nil || v != binVersion(t, supervisorBin) {
		t.Errorf("the real binary: %q, %v; want %q", v, err, binVersion(t, supervisorBin))
	}
}

// binVersion is what bin's version command prints after its name: "devel…" for the test's own
// build, the package version for the Makefile's (T3S_BIN, built with -X main.version).
func binVersion(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "version").Output()
	f := strings.Fields(string(out))
	if err != nil || len(f) != 2 || f[0] != "t3-supervise" {
		t.Fatalf("%s version: %q, %v", bin, out, err)
	}
	return f[1]
}

// dpkg's own states, from a status file as dpkg writes it: only a package in the middle of an
// unpack or configure holds the move back.
func TestDpkgState(t *testing.T) {
	db := `Package: t3-supervise-extras
Status: install ok unpacked
Version: 1

Package: t3-supervise
Status: install ok %s
Priority: optional
Version: 1.1-1

Package: zlib1g
Status: install ok installed
`
	for state, settled := range map[string]bool{"installed": true, "unpacked": false, "half-configured": false,
		"half-installed": false, "triggers-pending": true, "triggers-awaited": true} {
		got := parseDpkgState(strings.NewReader(fmt.Sprintf(db, state)), "t3-supervise")
		if got != state || dpkgSettled(got) != settled {
			t.Errorf("%s: read %q, settled %v", state, got, dpkgSettled(got))
		}
	}
	if got := parseDpkgState(strings.NewReader("Package: other\nStatus: install ok unpacked\n"), "t3-supervise"); got != "" || !dpkgSettled(got) {
		t.Errorf("not a package of dpkg's (make install): %q", got)
	}
}

// A binary dpkg has unpacked but not configured (postinst's daemon-reload still to come) is
// not moved to; once dpkg says installed, it is.
func TestUpgraderWaitsForDpkgToConfigure(t *testing.T) {
	w := newUpgradeWorld(t, "when-idle")
	w.u.dpkgDB = filepath.Join(w.dir, "status")
	setState := func(state string) {
		if err := os.WriteFile(w.u.dpkgDB, []byte("Package: t3-supervise\nStatus: install ok "+state+"\nVersion: 2\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setState("installed")
	t0 := time.Unix(1_000_000, 0)
	w.u.observe(w.ev, t0, idleNow)
	setState("unpacked")
	w.install(supervisorBin)
	for i := 1; i < 4; i++ {
		if w.u.observe(w.ev, t0.Add(time.Duration(i)*time.Hour), idleNow) {
			t.Fatal("moved to a binary dpkg has not configured")
		}
	}
	if got := eventsOf[UpgradePendingEvent](w.rec); !reflect.DeepEqual(got, []UpgradePendingEvent{{Binary: w.path, DpkgState: "unpacked"}}) {
		t.Errorf("want one upgrade_pending naming the dpkg state: %+v", got)
	}
	setState("installed")
	// The status file says installed, but dpkg's journal of a run in progress says otherwise.
	updates := filepath.Join(w.dir, "updates")
	os.MkdirAll(updates, 0o755)
	os.WriteFile(filepath.Join(updates, "0000"), []byte("Package: t3-supervise\nStatus: install ok half-configured\n"), 0o644)
	if w.u.observe(w.ev, t0.Add(5*time.Hour), idleNow) || !slices.Contains(eventsOf[UpgradePendingEvent](w.rec), UpgradePendingEvent{Binary: w.path, DpkgState: "half-configured"}) {
		t.Fatalf("moved while dpkg's updates/ says half-configured: %+v", w.rec.all())
	}
	os.WriteFile(filepath.Join(updates, "0001"), []byte("Package: t3-supervise\nStatus: install ok installed\n"), 0o644)
	if !w.u.observe(w.ev, t0.Add(6*time.Hour), idleNow) {
		t.Fatalf("no move once dpkg configured the package: %+v", w.rec.all())
	}
}
