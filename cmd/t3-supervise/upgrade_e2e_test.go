//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var upgradeBuilds struct {
	once      sync.Once
	dir       string
	old, next string // the binaries of versions N and N+1
	err       error
}

// upgradeBins builds the supervisor twice, as versions 1.0-1 and 1.1-1, with the binary's path
// checked every 100 ms instead of 5 s (-ldflags -X main.upgradeTick, a build-time knob only).
func upgradeBins(t *testing.T) (old, next string) {
	t.Helper()
	b := &upgradeBuilds
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "t3s-upgrade-"); b.err != nil {
			return
		}
		os.Chmod(b.dir, 0o755)
		for _, v := range []struct {
			to      *string
			version string
		}{{&b.old, "1.0-1"}, {&b.next, "1.1-1"}} {
			*v.to = filepath.Join(b.dir, "t3-supervise-"+v.version)
			out, err := exec.Command("go", "build", "-ldflags", "-X main.upgradeTick=100ms -X main.version="+v.version, "-o", *v.to, ".").CombinedOutput()
			if err != nil {
				b.err = fmt.Errorf("building version %s: %v\n%s", v.version, err, out)
				return
			}
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.old, b.next
}

// upgradeRun is a supervisor started from its own copy of version N, as systemd would start
// /usr/bin/t3-supervise, with a runtime directory for status.
type upgradeRun struct {
	w          *world
	p          *proc
	path, next string
	runtime    string
}

func startUpgradeRun(t *testing.T, mode string, extra ...string) *upgradeRun {
	t.Helper()
	old, next := upgradeBins(t)
	w := fallbackWorld(t)
	r := &upgradeRun{w: w, next: next, path: filepath.Join(w.dir, "usr-bin", "t3-supervise"), runtime: filepath.Join(w.dir, "run")}
	for _, d := range []string{filepath.Dir(r.path), r.runtime} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := copyFile(old, r.path); err != nil {
		t.Fatal(err)
	}
	w.exe = r.path
	w.setenv("T3_FAKE_MODE="+mode, "RUNTIME_DIRECTORY="+r.runtime)
	r.p = w.start(append([]string{"--no-cgroup"}, extra...)...)
	w.waitStarted(r.p)
	return r
}

// install replaces the binary by rename, as dpkg does (the new file unpacked beside it first).
func (r *upgradeRun) install() {
	r.w.t.Helper()
	tmp := r.path + ".dpkg-new"
	if err := copyFile(r.next, tmp); err != nil {
		r.w.t.Fatal(err)
	}
	if err := os.Rename(tmp, r.path); err != nil {
		r.w.t.Fatal(err)
	}
}

// waitBusy waits for the supervisor's verdict on the agents to be busy (activity.json), a
// sample or two after the agent started working: only then does an upgrade find a busy unit.
func (r *upgradeRun) waitBusy() {
	r.w.t.Helper()
	if !waitFor(func() bool {
		a, err := readActivity(r.runtime, runtimeOwner(r.w.t, r.runtime))
		return (err == nil && a.Busy) || r.p.exited()
	}, 30*time.Second) || r.p.exited() {
		r.w.t.Fatalf("the agents were never judged busy\n%s", r.p.stderr)
	}
}

// busyFlags judge the fake agent busy within a sample or two: no minimum age, 100 ms of CPU in
// 5 s (the agent uses about half a core; the supervisor samples every 5 s).
var busyFlags = []string{"--busy-min-age", "0s", "--busy-cpu", "100ms", "--busy-window", "5s"}

func (r *upgradeRun) waitEvent(kind string) string {
	r.w.t.Helper()
	if !waitFor(func() bool { return eventLine(r.p.stderr.String(), kind) != "" || r.p.exited() }, 30*time.Second) {
		r.w.t.Fatalf("no %s event\n%s", kind, r.p.stderr)
	}
	line := eventLine(r.p.stderr.String(), kind)
	if line == "" {
		r.w.t.Fatalf("exited %d before a %s event\n%s", r.p.exitCode(), kind, r.p.stderr)
	}
	return line
}

// A busy supervisor whose binary is replaced keeps t3 and its agent until the agent ends, then
// restarts onto the new binary: exit 73, with the versions in upgrade_restart. --rotation-idle
// 0: the only thing that can hold the move back is the agent, so a gate blind to it would exit
// at the first tick after the replacement, before any upgrade_pending.
func TestUpgradeWaitsForTheAgentThenExits73(t *testing.T) {
	parallel(t)
	r := startUpgradeRun(t, "serve-agent", append([]string{"--rotation-idle", "0"}, busyFlags...)...)
	agent, _ := strconv.Atoi(strings.TrimPrefix(r.w.waitNote("agent "), "agent "))
	t3 := r.w.waitStarted(r.p).Pid
	r.waitBusy()
	r.install()
	r.waitEvent("binary_replaced")
	pending := r.waitEvent("upgrade_pending")
	if !strings.Contains(pending, "T3_BUSY=true") {
		t.Errorf("upgrade_pending does not say agents are running: %s", pending)
	}
	// The decision "busy: stay" was taken; the state file and the kernel say the same.
	var st *BinaryState
	if !waitFor(func() bool {
		st = readBinaryState(r.runtime, runtimeOwner(r.w.t, r.runtime), r.p.cmd.Process.Pid)
		return st != nil && st.BinaryStale && st.UpgradePending && st.RunningVersion == "1.0-1"
	}, 10*time.Second) {
		t.Errorf("status's binary fields: %+v", st)
	}
	if r.p.exited() || !processAlive(t3) || !processAlive(agent) {
		t.Fatalf("while the agent works: supervisor exited %v, t3 alive %v, agent alive %v\n%s",
			r.p.exited(), processAlive(t3), processAlive(agent), r.p.stderr)
	}
	if strings.Contains(r.p.stderr.String(), "upgrade_restart") {
		t.Fatalf("restart decided while the agent works:\n%s", r.p.stderr)
	}
	syscall.Kill(agent, syscall.SIGTERM) // the agent's turn ends
	if code := r.p.wait(t, 30*time.Second); code != exitUpgrade {
		t.Fatalf("exit %d, want %d\n%s", code, exitUpgrade, r.p.stderr)
	}
	line := eventLine(r.p.stderr.String(), "upgrade_restart")
	for _, want := range []string{"T3_RUNNING_VERSION=1.0-1", "T3_INSTALLED_VERSION=1.1-1", "T3_EXIT_CODE=73", "T3_BINARY_STALE=true"} {
		if !strings.Contains(line, want) {
			t.Errorf("upgrade_restart lacks %s: %s", want, line)
		}
	}
	if processAlive(t3) {
		t.Errorf("t3 (pid %d) outlived the supervisor's exit", t3)
	}
	_, notes := r.w.reports()
	if !strings.Contains(strings.Join(notes, "\n"), "signal terminated") {
		t.Errorf("t3 was not stopped gracefully (SIGTERM first): notes %q", notes)
	}
}

// An idle supervisor moves as soon as it sees the new binary.
func TestUpgradeOfAnIdleUnitIsImmediate(t *testing.T) {
	parallel(t)
	r := startUpgradeRun(t, "serve", "--rotation-idle", "0")
	r.install()
	if code := r.p.wait(t, 30*time.Second); code != exitUpgrade {
		t.Fatalf("exit %d, want %d\n%s", code, exitUpgrade, r.p.stderr)
	}
	if eventLine(r.p.stderr.String(), "upgrade_pending") != "" {
		t.Errorf("an idle unit waited:\n%s", r.p.stderr)
	}
	if line := eventLine(r.p.stderr.String(), "upgrade_restart"); !strings.Contains(line, "T3_INSTALLED_VERSION=1.1-1") {
		t.Errorf("upgrade_restart: %s", line)
	}
}

// SIGUSR2 (systemctl reload) asks for a restart when idle, even with no new binary; while an
// agent works it waits like an upgrade. A supervisor never dies of it.
func TestReloadRestartsWhenIdle(t *testing.T) {
	parallel(t)
	r := startUpgradeRun(t, "serve-agent", append([]string{"--rotation-idle", "0"}, busyFlags...)...)
	agent, _ := strconv.Atoi(strings.TrimPrefix(r.w.waitNote("agent "), "agent "))
	r.waitBusy()
	r.p.cmd.Process.Signal(syscall.SIGUSR2)
	if line := r.waitEvent("upgrade_requested"); !strings.Contains(line, "T3_BINARY_STALE=false") {
		t.Errorf("upgrade_requested: %s", line)
	}
	r.waitEvent("upgrade_pending")
	if r.p.exited() || !processAlive(agent) {
		t.Fatalf("a reload ended a busy unit\n%s", r.p.stderr)
	}
	syscall.Kill(agent, syscall.SIGTERM)
	if code := r.p.wait(t, 30*time.Second); code != exitUpgrade {
		t.Fatalf("exit %d, want %d\n%s", code, exitUpgrade, r.p.stderr)
	}
	if line := eventLine(r.p.stderr.String(), "upgrade_restart"); !strings.Contains(line, "T3_REQUESTED=true") || !strings.Contains(line, "T3_INSTALLED_VERSION=1.0-1") {
		t.Errorf("upgrade_restart: %s", line)
	}
}
