//go:build linux

package cgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The shim derives its target only from its own cgroup: nothing it reads from the environment
// or its arguments can point it elsewhere, and outside a supervisor's workload/server it does
// not move at all.
func TestShimStaysInsideItsOwnSubtree(t *testing.T) {
	mount := t.TempDir()
	for _, tc := range []struct {
		self string
		want ShimResult
	}{
		{"0::/user.slice/user-1000.slice/session-3.scope\n", ShimResult{}},                                                        // a login shell
		{"0::/system.slice/other.service\n", ShimResult{}},                                                                        // another unit
		{"0::/system.slice/x.service/workload/serverX\n", ShimResult{}},                                                           // a look-alike name
		{"0::/system.slice/x.service/workload/server/deeper\n", ShimResult{}},                                                     // not the server leaf
		{"0::/system.slice/x.service/workload/agents/12-34\n", ShimResult{Leaf: "/system.slice/x.service/workload/agents/12-34"}}, // already placed
		{"4:memory:/x\n", ShimResult{}},                                                                                           // no unified hierarchy line: a v1 host
		{"garbage\n", ShimResult{}},
	} {
		got, err := EnterAgentLeaf(strings.NewReader(tc.self), mount, 500)
		if err != nil || got != tc.want {
			t.Errorf("from %q: %+v, %v; want %+v", strings.TrimSpace(tc.self), got, err, tc.want)
		}
	}
	// Nothing was created anywhere under the mount.
	var made []string
	filepath.Walk(mount, func(p string, info os.FileInfo, err error) error {
		if p != mount {
			made = append(made, p)
		}
		return nil
	})
	if len(made) > 0 {
		t.Errorf("the shim created %v", made)
	}
}
