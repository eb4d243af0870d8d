//go:build linux

package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeUnit makes a plain directory that looks like a delegated unit cgroup to Discover.
func fakeUnit(t testing.TB, controllers string, swap bool) (mount string) {
	t.Helper()
	mount = t.TempDir()
	base := filepath.Join(mount, "system.slice", "t3-supervise@alice.service")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"cgroup.controllers": controllers + "\n", "cgroup.procs": "", "cgroup.subtree_control": ""}
	if swap {
		files["memory.swap.max"] = "max\n"
	}
	for f, v := range files {
		if err := os.WriteFile(filepath.Join(base, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return mount
}

const unitLine = "0::/system.slice/t3-supervise@alice.service\n"

func TestDiscoverAndApplyOnFakeFS(t *testing.T) {
	mount := fakeUnit(t, "cpu io memory pids", true)
	tree, err := Discover(strings.NewReader(unitLine), Options{Mount: mount, FakeFS: true})
	if err != nil {
		t.Fatal(err)
	}
	l := defaultLimits(t)
	l.PidsMax = 321
	warnings, err := tree.Apply(Plan(l), 4242)
	if err != nil {
		t.Fatal(err)
	}
	// A plain directory has no user.* xattr support for the optional step on some filesystems:
	// whatever happens, it is a warning, not a failure.
	_ = warnings
	for file, want := range map[string]string{
		"supervisor/cgroup.procs":                "4242",
		"cgroup.subtree_control":                 "+memory +pids",
		"workload/cgroup.subtree_control":        "+memory +pids",
		"workload/agents/cgroup.subtree_control": "+memory +pids",
		"workload/memory.max":                    "17179869184",
		"workload/memory.swap.max":               "0",
		"workload/memory.oom.group":              "0",
		"workload/agents/pids.max":               "321",
		"workload/agents/memory.high":            "12884901888",
		"workload/server/memory.low":             "1073741824",
	} {
		b, err := os.ReadFile(tree.Dir(file))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q (%v), want %q", file, b, err, want)
		}
	}
	for _, f := range []string{"memory.max", "memory.high", "memory.low", "memory.oom.group", "pids.max"} {
		if b, _ := os.ReadFile(tree.Dir(f)); len(b) != 0 {
			t.Errorf("the unit's own %s was written: %q", f, b)
		}
	}
}

func TestApplyErrorNamesFileAndValue(t *testing.T) {
	mount := fakeUnit(t, "memory pids", true)
	tree, err := Discover(strings.NewReader(unitLine), Options{Mount: mount, FakeFS: true})
	if err != nil {
		t.Fatal(err)
	}
	steps := Plan(defaultLimits(t))
	// Make memory.max unwritable the way a kernel would refuse it: here, by being a directory.
	if _, err := tree.Apply(steps[:7], 1); err != nil {
		t.Fatal(err)
	}
	os.Remove(tree.Dir("workload/memory.max"))
	os.Mkdir(tree.Dir("workload/memory.max"), 0o755)
	_, err = tree.Apply(steps, 1)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "workload/memory.max") || !strings.Contains(err.Error(), `"17179869184"`) {
		t.Errorf("error does not name file and value: %v", err)
	}
}

func TestDiscoverRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, self, controllers string
		swap                    bool
		sentinel                error
		hint                    string
	}{
		{"hybrid host", "4:memory:/x\n" + unitLine, "memory pids", true, ErrNotV2, "unified_cgroup_hierarchy"},
		{"v1 host", "4:memory:/x\n", "memory pids", true, ErrNotV2, "--no-cgroup"},
		{"root cgroup", "0::/\n", "memory pids", true, ErrNotDelegated, "Delegate=yes"},
		{"no memory controller", unitLine, "cpu pids", true, ErrNoController, "Delegate=yes"},
		{"no pids controller", unitLine, "memory", true, ErrNoController, "Delegate=yes"},
		{"no swap accounting", unitLine, "memory pids", false, ErrNoSwap, "swap"},
	} {
		mount := fakeUnit(t, tc.controllers, tc.swap)
		_, err := Discover(strings.NewReader(tc.self), Options{Mount: mount, FakeFS: true})
		var ce *Error
		if !errors.Is(err, tc.sentinel) || !errors.As(err, &ce) || !strings.Contains(ce.Hint, tc.hint) {
			t.Errorf("%s: err = %v, want %v with a hint about %q", tc.name, err, tc.sentinel, tc.hint)
		}
	}
	// Not a cgroup2 filesystem at all (a real check, no FakeFS).
	mount := fakeUnit(t, "memory pids", true)
	if _, err := Discover(strings.NewReader(unitLine), Options{Mount: mount}); !errors.Is(err, ErrNotV2) {
		t.Errorf("a tmp directory passed as cgroup2: %v", err)
	}
}

func TestLeafName(t *testing.T) {
	name, err := LeafName(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	pid, start, ok := strings.Cut(name, "-")
	if !ok || pid != strconv.Itoa(os.Getpid()) || start == "" {
		t.Errorf("LeafName = %q", name)
	}
	again, _ := LeafName(os.Getpid())
	if again != name {
		t.Errorf("not stable: %q then %q", name, again)
	}
}
