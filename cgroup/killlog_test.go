//go:build linux

package cgroup

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeKillLog stands in for the supervisor's atomic writer; the log's contract with it is the
// path, the bytes and the mode.
func writeKillLog(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return err
	}
	return os.Chmod(path, perm)
}

func testKill(i int) KillRecord {
	return KillRecord{Time: time.Unix(1_764_000_000+int64(i), 0).UTC(), Killer: "kernel", Signal: "SIGKILL",
		Victim: Victim{PID: 100 + i, Comm: "rg", Cmdline: "rg -e x", RSS: 10 << 30, Leaf: "7-1"}}
}

func TestKillLogRoundTrip(t *testing.T) {
	dir := t.TempDir()
	l := KillLog{Path: filepath.Join(dir, KillLogFile), WriteFile: writeKillLog}
	want := []KillRecord{testKill(1), testKill(2)}
	want[1].Killer, want[1].Signal = "t3-supervise", "SIGTERM"
	for _, k := range want {
		if err := l.Append(k); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadKillLog(dir, os.Getuid())
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("read back\n %+v, %v\nwant\n %+v", got, err, want)
	}
	st, err := os.Stat(l.Path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v (%v), want 0600: the victims' command lines are the user's", st.Mode().Perm(), err)
	}
}

func TestKillLogKeepsTheNewestAndTrimsCommandLines(t *testing.T) {
	dir := t.TempDir()
	l := KillLog{Path: filepath.Join(dir, KillLogFile), WriteFile: writeKillLog}
	for i := range MaxKills + 3 {
		k := testKill(i)
		k.Victim.Cmdline = strings.Repeat("x", 2*MaxKillLogFile) // a whole prompt, and more
		if err := l.Append(k); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadKillLog(dir, os.Getuid())
	if err != nil || len(got) != MaxKills {
		t.Fatalf("read back %d kills (%v), want %d", len(got), err, MaxKills)
	}
	if got[0].Victim.PID != 103 || got[MaxKills-1].Victim.PID != 100+MaxKills+2 {
		t.Errorf("kept pids %d..%d, want the newest: 103..%d", got[0].Victim.PID, got[MaxKills-1].Victim.PID, 100+MaxKills+2)
	}
	for _, k := range got {
		if len(k.Victim.Cmdline) != MaxKillCmdline {
			t.Fatalf("command line of %d bytes, want it trimmed to %d", len(k.Victim.Cmdline), MaxKillCmdline)
		}
	}
	// The bounds hold together: a full log of trimmed records is read, not refused.
	if st, _ := os.Stat(l.Path); st.Size() > MaxKillLogFile/4 {
		t.Errorf("a full log is %d bytes, too close to the read bound %d", st.Size(), MaxKillLogFile)
	}
}

func TestKillLogWithoutAFile(t *testing.T) {
	l := KillLog{} // no runtime directory: nothing is written, nothing called
	if err := l.Append(testKill(1)); err != nil {
		t.Fatal(err)
	}
	got, err := ReadKillLog(t.TempDir(), os.Getuid())
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("no file: %#v, %v; want an empty list and no error", got, err)
	}
}

// status runs as root and reads the log from the user's runtime directory: what the user put
// there must neither hang it, nor feed it without end, nor make it print a file the user may not
// read (the reader's full table is internal/userfile's).
func TestReadKillLogRefusesWhatTheUserPlanted(t *testing.T) {
	uid := os.Getuid()
	secret := filepath.Join(t.TempDir(), "root-only")
	if err := os.WriteFile(secret, []byte(`[{"killer":"kernel","victim":{"comm":"SECRET-OF-ROOT"}}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		plant func(p string) error
		uid   int
		want  string
	}{
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }, uid, "not a regular file"},
		{"symlink to a root-only file", func(p string) error { return os.Symlink(secret, p) }, uid, "symlink"},
		{"symlink to /dev/zero", func(p string) error { return os.Symlink("/dev/zero", p) }, uid, "symlink"},
		{"another owner", func(p string) error { return os.WriteFile(p, []byte("[]"), 0o600) }, uid + 1, "owned by uid"},
		{"oversize", func(p string) error {
			return os.WriteFile(p, append([]byte("["), bytes.Repeat([]byte(" "), MaxKillLogFile)...), 0o600)
		}, uid, "larger than"},
		{"not JSON", func(p string) error { return os.WriteFile(p, []byte("kills"), 0o600) }, uid, KillLogFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tc.plant(filepath.Join(dir, KillLogFile)); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			var got []KillRecord
			var err error
			go func() { got, err = ReadKillLog(dir, tc.uid); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("ReadKillLog still reading after 10 s")
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
			if got == nil || len(got) != 0 {
				t.Errorf("read %#v from it, want an empty list", got)
			}
		})
	}
}
