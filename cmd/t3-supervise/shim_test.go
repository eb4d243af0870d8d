//go:build linux

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The binary is a shim only where the supervisor put it: its shim directory named in the
// environment, and a symlink of the invoked name there to this very binary. Before, any name
// but t3-supervise* made it one (a binary renamed t3s, or installed as anything else).
func TestShimModeIsExplicit(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	symlink(t, self, filepath.Join(dir, "claude"))
	other := filepath.Join(t.TempDir(), "other")
	write(t, other, []byte("#!/bin/sh\n"))
	symlink(t, other, filepath.Join(dir, "codex"))
	if err := copyFile(self, filepath.Join(dir, "copy")); err != nil {
		t.Fatal(err)
	}
	marker := []string{shimDirVar + "=" + dir}
	for _, tc := range []struct {
		argv0 string
		env   []string
		want  bool
	}{
		{"claude", marker, true},
		{"/some/where/claude", marker, true},
		{"claude", nil, false},                                // no shim directory said: a binary called claude
		{"t3s", marker, false},                                // renamed or installed under another name
		{"t3s", nil, false},                                   //
		{"codex", marker, false},                              // a link there, but not to this binary
		{"copy", marker, false},                               // a copy, not a link
		{"gemini", marker, false},                             // no shim of that name
		{"claude", []string{shimDirVar + "=relative"}, false}, // only an absolute directory
	} {
		if got := isShim(tc.argv0, tc.env, self); got != tc.want {
			t.Errorf("isShim(%q, %q) = %v, want %v", tc.argv0, tc.env, got, tc.want)
		}
	}
}

// A shim whose PATH leads back to itself (a wrapper script that execs `claude` by name, or a
// second copy of the binary under the agent's name) ends with a message: before, the exec'ing
// went on for ever.
func TestShimNeverLoops(t *testing.T) {
	for name, plant := range map[string]func(t *testing.T, dir string){
		"wrapper execs claude by name": func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "claude"), []byte("#!/bin/sh\nexec claude \"$@\"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		},
		"a second copy named claude": func(t *testing.T, dir string) {
			if err := copyFile(supervisorBin, filepath.Join(dir, "claude")); err != nil {
				t.Fatal(err)
			}
			os.Chmod(filepath.Join(dir, "claude"), 0o755)
		},
	} {
		t.Run(name, func(t *testing.T) {
			shimDir, next := t.TempDir(), t.TempDir()
			symlink(t, supervisorBin, filepath.Join(shimDir, "claude"))
			plant(t, next)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(shimDir, "claude"), "--version")
			cmd.Env = []string{"PATH=" + shimDir + ":" + next + ":/usr/bin:/bin", shimDirVar + "=" + shimDir, "HOME=" + t.TempDir()}
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("still exec'ing after 10 s: %s", tail(out))
			}
			if err == nil {
				t.Fatalf("exit 0: %s", tail(out))
			}
			t.Logf("ended: %v: %s", err, tail(out))
		})
	}
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = "…" + s[len(s)-300:]
	}
	return s
}

// The shims' set-up replaces its own symlinks only: the user's real claude in a --shim-dir of
// theirs, or a link of theirs, is left alone (before, both were deleted).
func TestShimSetUpRemovesOnlyItsOwn(t *testing.T) {
	self, _ := os.Executable()
	dir := t.TempDir()
	real := filepath.Join(dir, "claude")
	write(t, real, []byte("the user's real claude"))
	elsewhere := filepath.Join(t.TempDir(), "codex-real")
	write(t, elsewhere, nil)
	symlink(t, elsewhere, filepath.Join(dir, "codex"))
	symlink(t, "/usr/lib/old/t3-supervise", filepath.Join(dir, "gemini")) // an older binary's path: ours
	err := makeShims(dir, []string{"claude", "codex", "gemini", "aider"})
	if err == nil || !strings.Contains(err.Error(), real) || !strings.Contains(err.Error(), filepath.Join(dir, "codex")) {
		t.Errorf("makeShims error %v, want one naming %s and the codex link", err, real)
	}
	if b, _ := os.ReadFile(real); string(b) != "the user's real claude" {
		t.Errorf("the user's claude now holds %q", b)
	}
	if target, _ := os.Readlink(filepath.Join(dir, "codex")); target != elsewhere {
		t.Errorf("the user's codex link now points at %q", target)
	}
	for _, n := range []string{"gemini", "aider"} {
		if target, _ := os.Readlink(filepath.Join(dir, n)); target != self {
			t.Errorf("shim %s points at %q, want %s", n, target, self)
		}
	}
	removeShims(dir, []string{"claude", "codex", "gemini", "aider"})
	for _, n := range []string{"claude", "codex"} {
		if _, err := os.Lstat(filepath.Join(dir, n)); err != nil {
			t.Errorf("removeShims removed the user's %s: %v", n, err)
		}
	}
	for _, n := range []string{"gemini", "aider"} {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			t.Errorf("removeShims left shim %s", n)
		}
	}
}
