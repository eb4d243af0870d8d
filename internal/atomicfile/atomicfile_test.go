package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		perm os.FileMode
		data string
	}{
		{"kills.json", 0o600, "[]\n"},
		{"t3.prom", 0o644, "t3_up 1\n"},
	} {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, []byte("old, and longer than the new content\n"), 0o666); err != nil {
			t.Fatal(err)
		}
		if err := Write(path, []byte(tc.data), tc.perm); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		st, _ := os.Stat(path)
		if err != nil || string(b) != tc.data || st.Mode().Perm() != tc.perm {
			t.Errorf("%s: %q mode %v (%v), want %q mode %v", tc.name, b, st.Mode().Perm(), err, tc.data, tc.perm)
		}
		if uid := st.Sys().(*syscall.Stat_t).Uid; int(uid) != os.Geteuid() {
			t.Errorf("%s: owned by uid %d, not by this process's %d", tc.name, uid, os.Geteuid())
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("left behind: %v", entries)
	}
	if err := Write(filepath.Join(dir, "missing", "f"), nil, 0o600); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("in a missing directory: %v", err)
	}
}

// A failed rename leaves the old file as it was and no temporary file.
func TestWriteLeavesNothingOnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "claude-oauth.env")
	if err := Write(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rename = func(string, string) error { return errors.New("injected rename failure") }
	defer func() { rename = os.Rename }()
	if err := Write(path, []byte("new\n"), 0o600); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Errorf("error %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
	if b, _ := os.ReadFile(path); string(b) != "old\n" {
		t.Errorf("the old file reads %q", b)
	}
}

// A reader never sees a partial file while it is replaced.
func TestWriteIsAtomicForReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	a, b := strings.Repeat("a", 1<<16), strings.Repeat("b", 1<<17)
	if err := Write(path, []byte(a), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			next := a
			if i%2 == 0 {
				next = b
			}
			if err := Write(path, []byte(next), 0o600); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for reads := 0; ; reads++ {
		select {
		case <-done:
			if reads == 0 {
				t.Error("no read while the writer ran")
			}
			return
		default:
		}
		got, err := os.ReadFile(path)
		if err != nil || (string(got) != a && string(got) != b) {
			t.Fatalf("read %d bytes, %v: neither the old file nor the new one", len(got), err)
		}
	}
}

// Only the temporary files older than the age go; the file itself and a fresh temporary stay.
func TestRemoveStaleTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "claude-oauth.env")
	stale, fresh := filepath.Join(dir, ".claude-oauth.env.tmp-1"), filepath.Join(dir, ".claude-oauth.env.tmp-2")
	for _, f := range []string{path, stale, fresh} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Minute)
	for _, f := range []string{path, stale} {
		if err := os.Chtimes(f, old, old); err != nil {
			t.Fatal(err)
		}
	}
	RemoveStaleTemps(path, 10*time.Second)
	for f, want := range map[string]bool{path: true, stale: false, fresh: true} {
		if _, err := os.Stat(f); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(f), err == nil, want)
		}
	}
}
