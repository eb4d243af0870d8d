//go:build linux

package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// status reads a unit's tree as root: only a real cgroup2 directory, reached through no
// symlink, is read. A plain directory that looks like a subtree (the user's, in /tmp) is not.
func TestReadStatusReadsOnlyARealCgroupTree(t *testing.T) {
	mount := t.TempDir()
	elsewhere := t.TempDir()
	if err := os.MkdirAll(filepath.Join(elsewhere, WorkloadDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(mount, "unit.service")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(mount, "plain.service", WorkloadDir), 0o755); err != nil {
		t.Fatal(err)
	}
	for base, want := range map[string]string{
		"/unit.service":  "symlink",
		"/plain.service": "not on a cgroup2 filesystem",
	} {
		tree, err := CgroupTree(mount, base)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := tree.ReadStatus(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadStatus of %s: %+v, %v; want an error saying %q", base, st, err, want)
		}
	}
	// Even a fake tree (unit tests) is not read through a symlink.
	fake := &Tree{Mount: mount, Base: "/unit.service", fake: true}
	if _, err := fake.ReadStatus(); err == nil {
		t.Error("a fake tree behind a symlink was read")
	}
}

func TestCgroupTreeRefusesToClimb(t *testing.T) {
	for _, base := range []string{"../x", "/a/../../x", "/a/./b", "..", ""} {
		if tree, err := CgroupTree("/sys/fs/cgroup", base); err == nil {
			t.Errorf("CgroupTree(%q) = %s, want an error", base, tree.Dir("."))
		}
	}
	tree, err := CgroupTree("/m", "system.slice/u.service/")
	if err != nil || tree.Dir(".") != "/m/system.slice/u.service" {
		t.Errorf("CgroupTree of a plain path: %v, %v", tree, err)
	}
}

// A FIFO planted where a cgroup file is read does not hang the reader.
func TestReadFileRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	if err := mkfifo(filepath.Join(dir, "cgroup.procs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "memory.current")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cgroup.procs", "memory.current"} {
		var e *Error
		if _, err := readFile(dir, f); err == nil || !errors.As(err, &e) {
			t.Errorf("readFile %s: %v, want a refusal", f, err)
		}
	}
}

func mkfifo(p string) error { return unix.Mkfifo(p, 0o600) }
