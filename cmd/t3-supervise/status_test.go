//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"t3-supervise/cgroup"
)

// status runs as root for fleet tooling and reads kills.json from the user's runtime
// directory: whatever the user put there must neither hang it, nor feed it without end, nor
// make it print a file the user may not read.
func TestReadKillsRefusesWhatTheUserPlanted(t *testing.T) {
	uid := os.Getuid()
	secret := filepath.Join(t.TempDir(), "root-only")
	rec, _ := json.Marshal([]killRecord{{Killer: "kernel", Victim: cgroup.Victim{PID: 7, Comm: "SECRET-OF-ROOT"}}})
	if err := os.WriteFile(secret, rec, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, dir string) // makes dir/kills.json
		uid   int
		want  string // in the error
	}{
		{"fifo", func(t *testing.T, dir string) { mkfifo(t, filepath.Join(dir, killsFile)) }, uid, "not a regular file"},
		{"symlink to /dev/zero", func(t *testing.T, dir string) { symlink(t, "/dev/zero", filepath.Join(dir, killsFile)) }, uid, "symlink"},
		{"symlink to a root-only file", func(t *testing.T, dir string) { symlink(t, secret, filepath.Join(dir, killsFile)) }, uid, "symlink"},
		{"another owner", func(t *testing.T, dir string) { write(t, filepath.Join(dir, killsFile), rec) }, uid + 1, "owned by uid"},
		{"oversize", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, killsFile), append([]byte("["), bytes.Repeat([]byte(" "), maxKillsFile)...))
		}, uid, "larger than"},
		{"a directory", func(t *testing.T, dir string) { os.Mkdir(filepath.Join(dir, killsFile), 0o700) }, uid, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.plant(t, dir)
			kills, err := readKillsWithin(t, dir, tc.uid)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
			if len(kills) != 0 {
				t.Errorf("read %d kill records from it: %+v", len(kills), kills)
			}
		})
	}
	// The runtime directory itself a symlink (to a directory holding the root-only records).
	t.Run("symlinked directory", func(t *testing.T) {
		other := t.TempDir()
		symlink(t, secret, filepath.Join(other, killsFile))
		write(t, filepath.Join(other, killsFile+".real"), rec)
		link := filepath.Join(t.TempDir(), "rt")
		symlink(t, other, link)
		if kills, err := readKillsWithin(t, link, uid); err == nil || len(kills) != 0 {
			t.Errorf("read through a symlinked runtime directory: %v, %+v", err, kills)
		}
	})
	t.Run("the user's own file", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, killsFile), rec)
		kills, err := readKillsWithin(t, dir, uid)
		if err != nil || len(kills) != 1 || kills[0].Victim.PID != 7 {
			t.Errorf("got %+v, %v; want the one record", kills, err)
		}
	})
	t.Run("no file", func(t *testing.T) {
		if kills, err := readKillsWithin(t, t.TempDir(), uid); err != nil || kills == nil || len(kills) != 0 {
			t.Errorf("got %+v, %v; want an empty list and no error", kills, err)
		}
	})
}

// readKillsWithin is readKills with a deadline: before the fix a FIFO hung it for ever.
func readKillsWithin(t *testing.T, dir string, uid int) ([]killRecord, error) {
	t.Helper()
	type result struct {
		k   []killRecord
		err error
	}
	done := make(chan result, 1)
	go func() {
		k, err := readKills(dir, uid)
		done <- result{k, err}
	}()
	select {
	case r := <-done:
		return r.k, r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("readKills(%s) still reading after 10 s", dir)
		return nil, nil
	}
}

// The supervisor writes kills.json for its own user and root only: victims' command lines.
func TestKillsFileIsPrivate(t *testing.T) {
	p := filepath.Join(t.TempDir(), killsFile)
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	h := &healthState{killsPath: p}
	h.noteEvent(cgroup.OOMKill{Victim: cgroup.Victim{PID: 9, Comm: "rg", Cmdline: strings.Repeat("x", 3*maxRecordedCmdline)}, Known: true})
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode().Perm(); m != 0o600 {
		t.Errorf("kills.json mode %#o, want 0600", m)
	}
	kills, err := readKills(filepath.Dir(p), os.Getuid())
	if err != nil || len(kills) != 1 {
		t.Fatalf("read back %d records (%v), want 1", len(kills), err)
	}
	if n := len(kills[0].Victim.Cmdline); n != maxRecordedCmdline {
		t.Errorf("the recorded command line has %d bytes, want it trimmed to %d", n, maxRecordedCmdline)
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
