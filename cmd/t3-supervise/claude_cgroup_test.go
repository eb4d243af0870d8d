//go:build linux

package main

// Agent placement with the real claude on this host's cgroup v2 plumbing. The supervisor does
// not set up its subtree on a hybrid host (cgroup.Discover refuses one: memory is a v1
// controller there), so this test builds the same subtree on the unified hierarchy by hand, as
// cgroup/host_test.go does, and drives the packages a real run uses: supervise.Start clones the
// SDK stand-in into workload/server (CLONE_INTO_CGROUP), the real t3-supervise binary is the
// `claude` shim first on its PATH, Child.Stop ends it. The memory side is the VM tier's.

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"t3-supervise/cgroup"
	"t3-supervise/internal/claudetest"
	"t3-supervise/internal/procstat"
	"t3-supervise/internal/testenv"
	"t3-supervise/internal/vaulttest"
	"t3-supervise/supervise"
	"t3-supervise/test/anthropicapi"
)

// unifiedTree makes a throwaway base cgroup with workload/, server/ and agents/ on the cgroup v2
// hierarchy of this host (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid one).
func unifiedTree(t *testing.T) *cgroup.Tree {
	t.Helper()
	// Where the shim looks, too.
	mount := cgroup.UnifiedMount()
	var st unix.Statfs_t
	missing := ""
	if unix.Statfs(mount, &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC || unix.Access(mount, unix.W_OK) != nil {
		missing = "no writable cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified"
	}
	testenv.Need(t, testenv.Cgroup2, missing)
	tree := &cgroup.Tree{Mount: mount, Base: "/t3s-claude-" + randomHex(4)}
	if err := os.Mkdir(tree.Dir("."), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = tree.KillAll()
		_ = tree.Teardown()
		_ = unix.Rmdir(tree.Dir("."))
	})
	if _, err := tree.Apply([]cgroup.Step{{Op: cgroup.OpMkdir, Dir: cgroup.WorkloadDir},
		{Op: cgroup.OpMkdir, Dir: cgroup.ServerDir}, {Op: cgroup.OpMkdir, Dir: cgroup.AgentsDir}}, 0); err != nil {
		t.Fatal(err)
	}
	return tree
}

// placement is one SDK stand-in started in server/ of a fresh tree, with claude's Bash tool
// scripted to leave a child behind and say its pid.
type placement struct {
	t      *testing.T
	tree   *cgroup.Tree
	child  *supervise.Child
	sdk    claudetest.SDK
	dir    string
	marker string // in the environment of everything the stand-in spawns
}

func startPlacement(t *testing.T, extraEnv ...string) *placement {
	t.Helper()
	// The tool: bash (claude's Bash tool shell) with a child that runs until killed and says its pid
	// (claude refuses a plain `sleep N` there).
	return startPlacementTool(t, func(dir string) string { return fmt.Sprintf("tail -f /dev/null & echo $! > %s/tool.pid; wait", dir) }, extraEnv...)
}

// startPlacementTool is startPlacement with the Bash command tool(dir) in claude's scripted turn.
func startPlacementTool(t *testing.T, tool func(dir string) string, extraEnv ...string) *placement {
	t.Helper()
	testenv.NeedRoot(t)
	parts := claudetest.Need(t)
	tree := unifiedTree(t)
	dir := t.TempDir()
	pl := &placement{t: t, tree: tree, dir: dir, marker: "T3S_TEST_MARKER=" + randomHex(8)}
	api := anthropicapi.New(anthropicapi.Script{Command: tool(dir)})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	shimDir := filepath.Join(dir, "shim")
	if err := os.Mkdir(shimDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(supervisorBin, filepath.Join(shimDir, "claude")); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(freeLoopbackPort(t))
	pl.sdk = claudetest.SDK{URL: "http://127.0.0.1:" + port}
	env := append([]string{
		"PATH=" + shimDir + ":" + parts.Bin + ":/usr/bin:/bin", "HOME=" + dir, "LANG=C.UTF-8",
		"ANTHROPIC_BASE_URL=" + srv.URL, "CLAUDE_CODE_OAUTH_TOKEN=" + vaulttest.FakeToken(),
		shimAdjVar + "=600", shimDirVar + "=" + shimDir, "T3_SDK_PROBE_INTERVAL=0", pl.marker,
	}, extraEnv...)
	logf, err := os.Create(filepath.Join(dir, "t3.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("SDK stand-in output:\n%s", b)
		}
	})
	serverDir, err := tree.OpenServer()
	if err != nil {
		t.Fatal(err)
	}
	defer serverDir.Close()
	pl.child, err = supervise.Start(supervise.Config{Path: parts.T3, Args: []string{"serve", "--host", "127.0.0.1", "--port", port},
		Env: env, Dir: dir, Stdout: logf, Stderr: logf, Cgroup: serverDir, Tree: tree})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pl.child.Stop(time.Second) })
	pl.sdk.WaitUp(t, 60*time.Second, pl.child.Done())
	return pl
}

// runTool starts a session and returns the pids of its claude, the Bash tool's shell and that
// shell's child, once the child said its pid.
func (pl *placement) runTool() (claude, shell, tool int) {
	pl.t.Helper()
	id, err := pl.sdk.Start("run the script")
	if err != nil {
		pl.t.Fatal(err)
	}
	deadline := time.Now().Add(turnLimit)
	for tool == 0 {
		s, err := pl.sdk.Session(id)
		if time.Now().After(deadline) || s.State == "failed" || s.State == "closed" || s.State == "idle" {
			pl.t.Fatalf("the Bash tool did not run (no %s/tool.pid): session %+v, %v", pl.dir, s, err)
		}
		time.Sleep(50 * time.Millisecond)
		b, _ := os.ReadFile(filepath.Join(pl.dir, "tool.pid"))
		tool, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	shell = ppidOf(pl.t, tool)
	claude = ppidOf(pl.t, shell)
	if got := ppidOf(pl.t, claude); got != pl.child.Pid() {
		pl.t.Fatalf("tool %d < shell %d < %d < %d, not the SDK stand-in %d", tool, shell, claude, got, pl.child.Pid())
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", claude)); filepath.Base(exe) != "claude" {
		pl.t.Fatalf("the tool's grandparent %d runs %s, not claude", claude, exe)
	}
	return claude, shell, tool
}

// stop ends the stand-in as the supervisor does (SIGTERM, grace, cgroup.kill of the workload)
// and fails the test if any process it spawned, or pids, is still alive.
func (pl *placement) stop(pids ...int) {
	pl.t.Helper()
	if r := pl.child.Stop(5 * time.Second); r.KillErr != nil || r.Exit.Status() != 0 {
		pl.t.Errorf("stop: %v, kill: %v; want exit 0 (T3 exits 0 on SIGTERM)", r.Exit, r.KillErr)
	}
	for _, pid := range append(pids, pl.child.Pid()) {
		if processAlive(pid) {
			pl.t.Errorf("pid %d (%s) survived the stop", pid, comm(pid))
		}
	}
	for _, pid := range marked(pl.marker) {
		if processAlive(pid) {
			pl.t.Errorf("pid %d (%s), spawned by the SDK stand-in, survived the stop", pid, comm(pid))
		}
	}
}

func ppidOf(t *testing.T, pid int) int {
	t.Helper()
	st, err := procstat.Read(pid)
	if err != nil {
		t.Fatal(err)
	}
	return st.PPID
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

func cgroupPath(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	t.Fatalf("pid %d: no cgroup v2 line in %q", pid, b)
	return ""
}

// marked lists the processes whose environment carries marker (KEY=VALUE).
func marked(marker string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/environ")
		for _, kv := range strings.Split(string(b), "\x00") {
			if kv == marker {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// (c) With T3's default binary path, `claude` found on the PATH, claude comes up through the
// shim: it and its Bash tool's processes are in its own agents/<leaf>, with the agents'
// oom_score_adj; the server stays in server/. After the stop nothing it spawned is left.
func TestClaudeAgentAndToolsInTheirOwnLeaf(t *testing.T) {
	pl := startPlacement(t)
	claude, shell, tool := pl.runTool()
	leaf, err := cgroup.LeafName(claude)
	if err != nil {
		t.Fatal(err)
	}
	want := pl.tree.Base + "/" + cgroup.AgentsDir + "/" + leaf
	for _, pid := range []int{claude, shell, tool} {
		if got := cgroupPath(t, pid); got != want {
			t.Errorf("%s (pid %d) in %s, want its agent's leaf %s", comm(pid), pid, got, want)
		}
	}
	if got, wantServer := cgroupPath(t, pl.child.Pid()), pl.tree.Base+"/"+cgroup.ServerDir; got != wantServer {
		t.Errorf("the SDK stand-in is in %s, want %s", got, wantServer)
	}
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", claude)); strings.TrimSpace(string(b)) != "600" {
		t.Errorf("claude's oom_score_adj %q, want the shim's 600", b)
	}
	pl.stop(claude, shell, tool)
}

// T3's binary-path setting as an absolute path bypasses the shim: the SDK spawns that file
// directly, so claude starts in server/ with the server's oom_score_adj and only the
// supervisor's watch of server/ (not run here: it needs the memory controller) moves it out.
// docs/migration.md tells operators to keep the setting at `claude`.
func TestClaudeAbsoluteBinaryPathBypassesTheShim(t *testing.T) {
	parts := claudetest.Need(t)
	pl := startPlacement(t, "T3_SDK_BINARY_PATH="+parts.Claude)
	claude, shell, tool := pl.runTool()
	server := pl.tree.Base + "/" + cgroup.ServerDir
	for _, pid := range []int{claude, shell, tool} {
		if got := cgroupPath(t, pid); got != server {
			t.Errorf("%s (pid %d) in %s: want %s, where the SDK spawned it past the shim", comm(pid), pid, got, server)
		}
	}
	if leaves, _ := os.ReadDir(pl.tree.Dir(cgroup.AgentsDir)); countDirs(leaves) != 0 {
		t.Errorf("an agent leaf appeared without the shim")
	}
	pl.stop(claude, shell, tool)
}

func countDirs(ents []os.DirEntry) int {
	n := 0
	for _, e := range ents {
		if e.IsDir() {
			n++
		}
	}
	return n
}
