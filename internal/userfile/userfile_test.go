//go:build linux

package userfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Root reads what the user put in the user's own place: it must neither hang, nor feed the
// reader without end, nor make it print a file the user may not read.
func TestReadRefusesWhatTheUserPlanted(t *testing.T) {
	uid := os.Getuid()
	const max = 64
	secret := filepath.Join(t.TempDir(), "root-only")
	mustWrite(t, secret, []byte("SECRET-OF-ROOT"))
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, p string) // makes the file at p
		uid   int
		want  string // in the error
	}{
		{"fifo", func(t *testing.T, p string) { must(t, syscall.Mkfifo(p, 0o600)) }, uid, "not a regular file"},
		{"symlink to /dev/zero", func(t *testing.T, p string) { must(t, os.Symlink("/dev/zero", p)) }, uid, "symlink"},
		{"symlink to a root-only file", func(t *testing.T, p string) { must(t, os.Symlink(secret, p)) }, uid, "symlink"},
		{"another owner", func(t *testing.T, p string) { mustWrite(t, p, []byte("x")) }, uid + 1, "owned by uid"},
		{"oversize", func(t *testing.T, p string) { mustWrite(t, p, bytes.Repeat([]byte(" "), max+1)) }, uid, "larger than"},
		{"a directory", func(t *testing.T, p string) { must(t, os.Mkdir(p, 0o700)) }, uid, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.plant(t, filepath.Join(dir, "f"))
			b, err := readWithin(t, dir, "f", tc.uid, max)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
				t.Errorf("error %v, want one naming the path and saying %q", err, tc.want)
			}
			if len(b) != 0 {
				t.Errorf("read %q", b)
			}
		})
	}
	t.Run("symlinked directory", func(t *testing.T) {
		other := t.TempDir()
		mustWrite(t, filepath.Join(other, "f"), []byte("the other place's"))
		link := filepath.Join(t.TempDir(), "rt")
		must(t, os.Symlink(other, link))
		if b, err := readWithin(t, link, "f", uid, max); err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Errorf("read through a symlinked directory: %q, %v", b, err)
		}
	})
	t.Run("the user's own file, at the bound", func(t *testing.T) {
		dir := t.TempDir()
		want := bytes.Repeat([]byte("k"), max)
		mustWrite(t, filepath.Join(dir, "f"), want)
		if b, err := readWithin(t, dir, "f", uid, max); err != nil || !bytes.Equal(b, want) {
			t.Errorf("got %q, %v; want the file", b, err)
		}
	})
	t.Run("no file", func(t *testing.T) {
		if _, err := readWithin(t, t.TempDir(), "f", uid, max); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error %v, want fs.ErrNotExist", err)
		}
	})
}

// readWithin is Read with a deadline: a FIFO opened blocking hangs for ever.
func readWithin(t *testing.T, dir, name string, uid int, max int64) ([]byte, error) {
	t.Helper()
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := Read(dir, name, uid, max)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("Read(%s, %s) still reading after 10 s", dir, name)
		return nil, nil
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, p string, b []byte) {
	t.Helper()
	must(t, os.WriteFile(p, b, 0o600))
}
