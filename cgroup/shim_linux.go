//go:build linux

package cgroup

import (
	"errors"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// UnifiedMount is where the kernel's unified hierarchy is mounted: DefaultMount on a pure v2
// host; on a hybrid one (systemd.unified_cgroup_hierarchy=0) systemd mounts it at
// /sys/fs/cgroup/unified, under a tmpfs of v1 hierarchies. Only the filesystem magic decides
// (statfs(2)), never the environment. A supervisor does not run its subtree on a hybrid host
// (Discover refuses one), but the host test tier builds one on the unified hierarchy and
// proves the shim there with the real claude.
func UnifiedMount() string {
	for _, m := range []string{DefaultMount, DefaultMount + "/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(m, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return m
		}
	}
	return DefaultMount
}

// ShimResult says what EnterAgentLeaf did.
type ShimResult struct {
	Leaf  string // the leaf now holding the process, relative to the unit's cgroup
	Moved bool   // false: it was already in an agent leaf, or not under a supervisor at all
}

// EnterAgentLeaf is the shim's half of agent placement, run in the process that is about to
// exec an agent: when that process is in a supervisor's workload/server (t3 serve just spawned
// it), it creates its own leaf under the sibling workload/agents, moves itself there and raises
// its oom_score_adj to adj, so the agent and all it spawns start out as preferred OOM victims,
// accounted apart from the server.
//
// The target is derived only from the process's own cgroup (procSelfCgroup), never from the
// environment or arguments: the shim cannot be pointed at a cgroup outside the subtree it
// already runs in. A process in an agent leaf (an agent spawning an agent) stays in its leaf;
// one outside any supervisor's workload is left alone.
func EnterAgentLeaf(procSelfCgroup io.Reader, mount string, adj int) (ShimResult, error) {
	if mount == "" {
		mount = UnifiedMount()
	}
	sc, err := ParseProcCgroup(procSelfCgroup)
	if err != nil {
		return ShimResult{}, nil // no cgroup v2 here: nothing to do
	}
	serverSuffix := "/" + ServerDir
	if strings.Contains(sc.Path+"/", "/"+AgentsDir+"/") {
		return ShimResult{Leaf: sc.Path}, nil
	}
	if !strings.HasSuffix(sc.Path, serverSuffix) {
		return ShimResult{}, nil
	}
	base := strings.TrimSuffix(sc.Path, serverSuffix)
	leaf, err := LeafName(os.Getpid())
	if err != nil {
		return ShimResult{}, err
	}
	dir := path.Join(mount, base, AgentsDir, leaf)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return ShimResult{}, &Error{Path: dir, Err: err, Hint: hintFor(err)}
	}
	if err := writeFile(dir, "cgroup.procs", strconv.Itoa(os.Getpid())); err != nil {
		return ShimResult{}, err
	}
	res := ShimResult{Leaf: path.Join(base, AgentsDir, leaf), Moved: true}
	return res, setOOMScoreAdj(os.Getpid(), adj)
}
