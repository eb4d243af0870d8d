//go:build linux

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"t3-supervise/cgroup"
)

// The supervisor writes kills.json for its own user and root only (victims' command lines), where
// status reads it back.
func TestKillsFileIsPrivate(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	h := newHealthState(&config{RuntimeDir: dir}, &plan{}, 1, nil, realClock{}, &noteRecorder{})
	h.noteEvent(cgroup.OOMKill{Victim: cgroup.Victim{PID: 9, Comm: "rg", Cmdline: strings.Repeat("x", 3*cgroup.MaxKillCmdline)}, Known: true})
	st, err := os.Stat(filepath.Join(dir, cgroup.KillLogFile))
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode().Perm(); m != 0o600 {
		t.Errorf("kills.json mode %#o, want 0600", m)
	}
	kills, err := cgroup.ReadKillLog(dir, os.Getuid())
	if err != nil || len(kills) != 1 || kills[0].Killer != "kernel" || kills[0].Victim.PID != 9 {
		t.Fatalf("read back %+v (%v), want the one kernel kill of pid 9", kills, err)
	}
	if n := len(kills[0].Victim.Cmdline); n != cgroup.MaxKillCmdline {
		t.Errorf("the recorded command line has %d bytes, want it trimmed to %d", n, cgroup.MaxKillCmdline)
	}
}

// --user and --cgroup become paths: neither may lead out of the unit's places.
func TestStatusStaysInTheUnitsTree(t *testing.T) {
	// A directory that looks like a unit's subtree, outside the cgroup hierarchy.
	fake := t.TempDir()
	os.MkdirAll(filepath.Join(fake, cgroup.WorkloadDir), 0o755)
	climb := strings.Repeat("../", strings.Count(cgroup.DefaultMount, "/")) + strings.TrimPrefix(fake, "/")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--user", "../x"}, "not a user name"},
		{[]string{"--user", ".."}, "not a user name"},
		{[]string{"--user", "a/b"}, "not a user name"},
		{[]string{"--user", "no-such-user-t3s"}, "no-such-user-t3s"},
		{[]string{"--cgroup", climb}, "leave the unit's tree"},
		{[]string{"--cgroup", "/system.slice/../../" + climb}, "leave the unit's tree"},
		{[]string{"--cgroup", "/system.slice/./x"}, "leave the unit's tree"},
	} {
		var out, errb bytes.Buffer
		code := runStatus(tc.args, &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("status %q: exit %d, stderr %q; want %d saying %q (stdout %q)", tc.args, code, errb.String(), exitUsage, tc.want, out.String())
		}
	}
}

func mkfifo(t *testing.T, p string) {
	t.Helper()
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
