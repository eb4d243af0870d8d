//go:build linux

package cgroup

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"t3-supervise/internal/testenv"

	"t3-supervise/internal/procstat"
)

// The plumbing of the subtree — clone into a cgroup, the shim's self-placement, the watch's
// migration out of server/, cgroup.kill, teardown — needs a writable cgroup v2 hierarchy but
// not the memory controller. This host (hybrid) has one at /sys/fs/cgroup/unified, a pure v2
// host at /sys/fs/cgroup. The memory behaviour itself is the VM tier's.

const helperEnv = "CGROUP_TEST_HELPER"

// place and police are what a sweep's full look does of placement and policing, for the tests
// that drive one mechanism at a time; the watch itself runs them from placeTick and fullLook
// (look_linux.go).
func (w *watcher) place(ctx context.Context) {
	w.moveOut(ctx)
	w.adoptLeaves(ctx)
}

func (w *watcher) police(ctx context.Context) { w.policeLook(ctx, true) }

// startHelper runs this test binary as helper mode (TestMain) and returns once the helper said it
// is ready (its first line of output). When the test ends it is killed and reaped, unless the
// test reaped it already (Wait in the test's own goroutine: ProcessState is set).
func startHelper(t *testing.T, mode string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func TestMain(m *testing.M) {
	if mode, ok := os.LookupEnv(helperEnv); ok {
		helper(mode)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper(mode string) {
	switch mode {
	case "hang":
		fmt.Println("ready")
		select {}
	case "stubborn": // a runaway that ignores SIGTERM: only SIGKILL ends it
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		select {}
	case "burn": // once moved out of server/, use 300 ms more CPU (by the kernel's count), report, hang
		fmt.Println("ready")
		for {
			b, _ := os.ReadFile("/proc/self/cgroup")
			if strings.Contains(string(b), "/"+AgentsDir+"/") {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		used := func() time.Duration {
			var ru syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
		for from := used(); used()-from < 300*time.Millisecond; {
		}
		fmt.Println("ready")
		select {}
	case "shim": // what the shim does before exec'ing the agent, then report and hang
		f, _ := os.Open("/proc/self/cgroup")
		res, err := EnterAgentLeaf(f, os.Getenv("CGROUP_TEST_MOUNT"), 700)
		f.Close()
		fmt.Printf("%s %v %v\n", res.Leaf, res.Moved, err)
		select {}
	case "server": // a stand-in server: spawns a child (an agent by absolute path) and a setsid'd one
		for _, setsid := range []bool{false, true} {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), helperEnv+"=hang")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: setsid}
			out, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				panic(err)
			}
			bufio.NewReader(out).ReadString('\n')
			fmt.Printf("child %d\n", cmd.Process.Pid)
		}
		fmt.Println("ready")
		select {}
	case "wrapped-server": // a t3 behind a wrapper: spawns two children, then listens when told
		fmt.Printf("server %d\n", os.Getpid())
		for i := 0; i < 2; i++ {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), helperEnv+"=hang")
			out, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				panic(err)
			}
			bufio.NewReader(out).ReadString('\n')
			fmt.Printf("child %d\n", cmd.Process.Pid)
		}
		fmt.Println("spawned")
		bufio.NewReader(os.Stdin).ReadString('\n') // "listen"
		l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("CGROUP_TEST_PORT"))
		if err != nil {
			panic(err)
		}
		fmt.Printf("port %d\n", l.Addr().(*net.TCPAddr).Port)
		select {}
	}
}

// hostTree makes a throwaway base cgroup on a writable v2 hierarchy and the workload skeleton.
func hostTree(t *testing.T) *Tree {
	t.Helper()
	mount := ""
	for _, m := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(m, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			mount = m
			break
		}
	}
	missing := ""
	switch {
	case mount == "":
		missing = "no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified"
	case unix.Access(mount, unix.W_OK) != nil:
		missing = "the cgroup2 mount is not writable (needs root)"
	default:
		if _, err := os.Stat(filepath.Join(mount, "cgroup.procs")); err != nil {
			missing = err.Error()
		}
	}
	testenv.Need(t, testenv.Cgroup2, missing)
	b := make([]byte, 4)
	rand.Read(b)
	tree := &Tree{Mount: mount, Base: "/t3s-test-" + hex.EncodeToString(b)}
	if err := os.Mkdir(tree.Dir("."), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tree.Dir("cgroup.kill")); err != nil {
		testenv.Need(t, testenv.Cgroup2, "no cgroup.kill (Linux < 5.14)")
	}
	t.Cleanup(func() {
		_ = tree.KillAll()
		_ = tree.Teardown()
		_ = rmdir(tree.Dir("."))
	})
	for _, d := range []string{WorkloadDir, ServerDir, AgentsDir} {
		if err := tree.apply(Step{Op: OpMkdir, Dir: d}, 0); err != nil {
			t.Fatal(err)
		}
	}
	return tree
}

func startIn(t *testing.T, tree *Tree, mode string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	dir, err := tree.OpenServer()
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "CGROUP_TEST_MOUNT="+tree.Mount)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewReader(out)
}

func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc, err := ParseProcCgroup(f)
	if err != nil {
		t.Fatal(err)
	}
	return sc.Path
}

func TestShimMovesItselfIntoItsOwnLeaf(t *testing.T) {
	tree := hostTree(t)
	cmd, out := startIn(t, tree, "shim")
	line, _ := out.ReadString('\n')
	f := strings.Fields(line)
	if len(f) < 2 || f[1] != "true" {
		t.Fatalf("shim said %q", line)
	}
	leaf, _ := LeafName(cmd.Process.Pid)
	want := tree.Base + "/" + AgentsDir + "/" + leaf
	if f[0] != want || cgroupOf(t, cmd.Process.Pid) != want {
		t.Errorf("shim in %q (said %q), want %q", cgroupOf(t, cmd.Process.Pid), f[0], want)
	}
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", cmd.Process.Pid)); strings.TrimSpace(string(b)) != "700" {
		t.Errorf("oom_score_adj = %q, want 700", b)
	}
}

// startServer starts the helper as a server in server/ and returns it with the children it
// spawned there.
func startServer(t *testing.T, tree *Tree) (server *exec.Cmd, kids []int) {
	t.Helper()
	server, out := startIn(t, tree, "server")
	for {
		line, err := out.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "ready") {
			return server, kids
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "child ")))
		kids = append(kids, pid)
	}
}

// A shim can leave server/ between the watch listing it and moving it; its leaf then exists
// before the watch gets to it. The leaf is reported once, as the shim's, and gets its limits.
func TestWatchLeavesAShimsLeafToTheShim(t *testing.T) {
	tree := hostTree(t)
	server, kids := startServer(t, tree)
	defer server.Process.Kill()
	if len(kids) < 2 {
		t.Fatalf("the helper spawned %d children", len(kids))
	}
	clk := newFakeClock(t)
	w := newWatcher(tree, WatchConfig{ServerPID: server.Process.Pid, AgentOOMAdj: 600, Clock: clk})
	w.place(context.Background())
	clk.Advance(forkGrace + time.Millisecond)
	// The shim makes its leaf after the watch's last look and before its next.
	shimLeaf, _ := LeafName(kids[0])
	if err := os.Mkdir(tree.Dir(AgentsDir+"/"+shimLeaf), 0o755); err != nil {
		t.Fatal(err)
	}
	w.place(context.Background())
	via := map[string][]string{}
	for len(w.out) > 0 {
		if ev, ok := (<-w.out).(AgentPlaced); ok {
			via[ev.Leaf] = append(via[ev.Leaf], ev.Via)
		}
	}
	watchLeaf, _ := LeafName(kids[1])
	if got := strings.Join(via[shimLeaf], ","); got != "shim" {
		t.Errorf("the shim's leaf reported as %q, want once as the shim's (all: %v)", got, via)
	}
	if got := strings.Join(via[watchLeaf], ","); got != "watch" {
		t.Errorf("the watch's leaf reported as %q (all: %v)", got, via)
	}
	if !w.leaves[shimLeaf] {
		t.Error("the shim's leaf was not taken over (limits not applied)")
	}
	for _, pid := range kids[:2] {
		leaf, _ := LeafName(pid)
		if got, want := cgroupOf(t, pid), tree.Base+"/"+AgentsDir+"/"+leaf; got != want {
			t.Errorf("child %d in %q, want %q", pid, got, want)
		}
	}
	tree.KillAll()
	server.Wait()
}

func TestWatchMovesServerChildrenAndKillAllTakesEverything(t *testing.T) {
	tree := hostTree(t)
	server, kids := startServer(t, tree)
	if got := cgroupOf(t, server.Process.Pid); got != tree.Base+"/"+ServerDir {
		t.Fatalf("server started in %q", got)
	}
	clk := newFakeClock(t)
	w := newWatcher(tree, WatchConfig{ServerPID: server.Process.Pid, AgentOOMAdj: 600, Clock: clk})
	// New processes get forkGrace to exec (and, if they are shims, to place themselves).
	w.place(context.Background())
	clk.Advance(forkGrace - time.Millisecond)
	w.place(context.Background())
	if len(w.out) != 0 {
		t.Errorf("placed before the fork grace: %v", <-w.out)
	}
	clk.Advance(2 * time.Millisecond)
	w.place(context.Background())
	placed := 0
	for len(w.out) > 0 {
		if ev, ok := (<-w.out).(AgentPlaced); ok && ev.Via == "watch" {
			placed++
		}
	}
	if placed != 2 {
		t.Errorf("%d AgentPlaced events, want 2", placed)
	}
	for _, pid := range kids {
		leaf, _ := LeafName(pid)
		if got, want := cgroupOf(t, pid), tree.Base+"/"+AgentsDir+"/"+leaf; got != want {
			t.Errorf("child %d in %q, want %q", pid, got, want)
		}
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid)); strings.TrimSpace(string(b)) != "600" {
			t.Errorf("child %d oom_score_adj %q", pid, b)
		}
	}
	if got := cgroupOf(t, server.Process.Pid); got != tree.Base+"/"+ServerDir {
		t.Errorf("the server itself was moved to %q", got)
	}
	start := time.Now()
	if err := tree.KillAll(); err != nil {
		t.Fatal(err)
	}
	server.Wait()
	for _, pid := range kids {
		if st, err := procstat.Read(pid); err == nil && st.State != 'Z' {
			t.Errorf("pid %d survived cgroup.kill (state %c)", pid, st.State)
		}
	}
	t.Logf("cgroup.kill emptied the workload in %v", time.Since(start))
	w.removeEmptyLeaves(context.Background())
	if leaves := tree.agentLeaves(); len(leaves) != 0 {
		t.Errorf("empty leaves not removed: %v", leaves)
	}
	if err := tree.Teardown(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tree.Dir(WorkloadDir)); !os.IsNotExist(err) {
		t.Errorf("workload/ still there after teardown: %v", err)
	}
}

// The agents' CPU time as the activity policy reads it: each leaf's cpu.stat (on this host's
// unified hierarchy too, without the cpu controller), and without a cgroup the process trees
// below the server from /proc. A helper that used 300 ms of CPU shows at least that; one that
// only waits, far less.
func TestAgentCPU(t *testing.T) {
	tree := hostTree(t)
	pids := map[string]int{}
	for _, mode := range []string{"burn", "hang"} {
		cmd, out := startIn(t, tree, mode)
		if _, err := out.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(tree.Dir(AgentsDir+"/"+mode), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeFile(tree.Dir(AgentsDir+"/"+mode), "cgroup.procs", strconv.Itoa(cmd.Process.Pid)); err != nil {
			t.Fatal(err)
		}
		pids[mode] = cmd.Process.Pid
		if mode == "burn" {
			if _, err := out.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
		}
	}
	leaves, err := tree.AgentCPU()
	if err != nil || len(leaves) != 2 {
		t.Fatalf("AgentCPU: %+v %v", leaves, err)
	}
	for _, l := range leaves {
		if l.Leaf == "burn" && l.Usage < 300*time.Millisecond || l.Leaf == "hang" && l.Usage >= 300*time.Millisecond {
			t.Errorf("cpu.stat of leaf %s: %v", l.Leaf, l.Usage)
		}
	}
	// The same from /proc: both helpers are this test's children.
	trees, err := ProcessTreeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	burnLeaf, _ := LeafName(pids["burn"])
	hangLeaf, _ := LeafName(pids["hang"])
	found := 0
	for _, l := range trees {
		switch l.Leaf {
		case burnLeaf:
			found++
			if l.Usage < 250*time.Millisecond { // /proc counts in 10 ms ticks, sampled
				t.Errorf("/proc: the burning helper's tree %v", l.Usage)
			}
		case hangLeaf:
			found++
			if l.Usage >= 250*time.Millisecond {
				t.Errorf("/proc: the waiting helper's tree %v", l.Usage)
			}
		}
	}
	if found != 2 {
		t.Errorf("/proc: trees %+v, want both helpers (%s, %s)", trees, burnLeaf, hangLeaf)
	}
}

// A t3 started through a wrapper that does not exec (a shell script running node without
// exec): the supervisor's direct child is the shell, the real server its child. The watch must
// leave the server in server/, and place what the server spawns. Before, it moved the server
// (and its children with it) into an agent leaf after the fork grace: throttled, first to die.
func TestWatchKeepsTheServerBehindAWrapper(t *testing.T) {
	tree := hostTree(t)
	dir, err := tree.OpenServer()
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	// t3's port is known before it listens (--port); the server binds it a while after its start.
	probe, _ := net.Listen("tcp", "127.0.0.1:0")
	t3Port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	// dash runs a command that is not the last one of -c without exec.
	sh := exec.Command("/bin/sh", "-c", `"$0"; exit $?`, os.Args[0])
	sh.Env = append(os.Environ(), helperEnv+"=wrapped-server", "CGROUP_TEST_PORT="+strconv.Itoa(t3Port))
	sh.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	stdin, _ := sh.StdinPipe()
	stdout, _ := sh.StdoutPipe()
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tree.KillAll(); sh.Wait() })
	out := bufio.NewReader(stdout)
	var server, port int
	var kids []int
	for line := ""; !strings.HasPrefix(line, "spawned"); {
		if line, err = out.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		var n int
		if _, err := fmt.Sscanf(line, "server %d", &n); err == nil {
			server = n
		} else if _, err := fmt.Sscanf(line, "child %d", &n); err == nil {
			kids = append(kids, n)
		}
	}
	if st, _ := procstat.Read(server); st.PPID != sh.Process.Pid {
		t.Fatalf("the server %d is not the shell's child (ppid %d): the wrapper exec'd", server, st.PPID)
	}
	clk := newFakeClock(t)
	w := newWatcher(tree, WatchConfig{ServerPID: sh.Process.Pid, Port: t3Port, AgentOOMAdj: 600, Clock: clk})
	// Not listening yet: past the fork grace, nothing that may be the server is moved.
	w.place(context.Background())
	clk.Advance(forkGrace + time.Millisecond)
	w.place(context.Background())
	for _, pid := range append([]int{server}, kids...) {
		if got := cgroupOf(t, pid); got != tree.Base+"/"+ServerDir {
			t.Errorf("before the server listens, pid %d was moved to %q", pid, got)
		}
	}
	// Now it listens.
	io.WriteString(stdin, "listen\n")
	line, err := out.ReadString('\n')
	if _, err2 := fmt.Sscanf(line, "port %d", &port); err != nil || err2 != nil || port != t3Port {
		t.Fatalf("helper said %q (%v)", line, err)
	}
	w.place(context.Background())
	if got := cgroupOf(t, server); got != tree.Base+"/"+ServerDir {
		t.Errorf("the server %d (behind the wrapper) is in %q, want server/", server, got)
	}
	if got := cgroupOf(t, sh.Process.Pid); got != tree.Base+"/"+ServerDir {
		t.Errorf("the wrapper is in %q", got)
	}
	for _, pid := range kids {
		leaf, _ := LeafName(pid)
		if got, want := cgroupOf(t, pid), tree.Base+"/"+AgentsDir+"/"+leaf; got != want {
			t.Errorf("the server's child %d in %q, want %q", pid, got, want)
		}
	}
	found := false
	for len(w.out) > 0 {
		if ev, ok := (<-w.out).(ServerFound); ok {
			found = ev.PID == server && ev.Wrapper == sh.Process.Pid && ev.Port == port
			t.Logf("ServerFound %+v", ev)
		}
	}
	if !found {
		t.Error("no ServerFound event naming the server and the wrapper")
	}
}

// An agent can write its pid into supervisor/cgroup.procs, or mkdir a cgroup of its own
// anywhere in the subtree and move there (the user owns the delegated subtree): out of the
// workload's limits. The watch kills every such process and removes the foreign cgroups; the
// supervisor itself stays. Before, nothing looked at supervisor/ or foreign cgroups at all.
func TestPoliceKillsEscapees(t *testing.T) {
	tree := hostTree(t)
	if err := tree.apply(Step{Op: OpMkdir, Dir: SupervisorDir}, 0); err != nil {
		t.Fatal(err)
	}
	self, _ := startIn(t, tree, "hang") // stands in for the supervisor
	t.Cleanup(func() { self.Process.Kill(); self.Wait(); rmdir(tree.Dir(SupervisorDir)) })
	if err := writeFile(tree.Dir(SupervisorDir), "cgroup.procs", strconv.Itoa(self.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	where := []string{SupervisorDir, "escape", ServerDir + "/x", WorkloadDir + "/y", "escape2/deeper", WorkloadDir, AgentsDir}
	var escapees []*exec.Cmd
	for _, d := range where {
		if d != SupervisorDir {
			if err := os.MkdirAll(tree.Dir(d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cmd, out := startIn(t, tree, "hang")
		out.ReadString('\n')
		if err := writeFile(tree.Dir(d), "cgroup.procs", strconv.Itoa(cmd.Process.Pid)); err != nil {
			t.Fatal(err)
		}
		escapees = append(escapees, cmd)
	}
	w := newWatcher(tree, WatchConfig{SupervisorPID: self.Process.Pid})
	w.police(context.Background())
	for i, cmd := range escapees {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
				t.Errorf("escapee in %s ended %v, want SIGKILL", where[i], err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("escapee %d in %s still alive 5 s after the police", cmd.Process.Pid, where[i])
		}
	}
	if st, err := procstat.Read(self.Process.Pid); err != nil || st.State == 'Z' {
		t.Errorf("the supervisor was killed: %v", err)
	}
	killed := map[string]int{}
	for len(w.out) > 0 {
		if ev, ok := (<-w.out).(StrayKilled); ok {
			killed[ev.Cgroup] = ev.Victim.PID
		}
	}
	for i, d := range where {
		if killed[d] != escapees[i].Process.Pid {
			t.Errorf("no StrayKilled for pid %d in %s (events: %v)", escapees[i].Process.Pid, d, killed)
		}
	}
	// The foreign cgroups go once empty (at the next look, if a victim was still exiting).
	w.police(context.Background())
	for _, d := range []string{"escape", ServerDir + "/x", WorkloadDir + "/y", "escape2"} {
		if _, err := os.Stat(tree.Dir(d)); err == nil {
			t.Errorf("foreign cgroup %s not removed", d)
		}
	}
}

// An agent (the same user) writes max into the limits the plan set, and takes the memory
// controller out of workload/ and agents/: the next look restores all of it, and says so.
//
// The memory controller is not on every host's cgroup2 hierarchy (a hybrid host keeps it in v1;
// the cgroup2 tier is the plumbing, not memory, and the VM tier has it): without it the same
// look is run on a plan of core interface files, which every cgroup has and the owner may
// write, so the reading back and writing back on a real cgroupfs is exercised all the same.
func TestGuardRestoresLimitsOnTheHost(t *testing.T) {
	tree := hostTree(t)
	if b, _ := readFile(tree.Dir("."), "cgroup.controllers"); !strings.Contains(string(b), "memory") || !strings.Contains(string(b), "pids") {
		t.Logf("no memory and pids controllers here (%q): guarding core files", strings.TrimSpace(string(b)))
		guardCoreFilesOnHost(t, tree)
		return
	}
	var l Limits
	for _, kv := range []struct {
		s *Size
		v string
	}{{&l.MemoryMax, "512M"}, {&l.MemoryHigh, "384M"}, {&l.AgentMemoryMax, "256M"}} {
		if err := kv.s.Set(kv.v); err != nil {
			t.Fatal(err)
		}
	}
	l.PidsMax = 500
	var plan []Step
	for _, s := range Plan(l) {
		if s.Op != OpMoveSelf && s.Op != OpXattr { // nothing to move; xattrs are not limits
			plan = append(plan, s)
		}
	}
	if _, err := tree.Apply(plan, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rmdir(tree.Dir(AgentsDir + "/leaf")); rmdir(tree.Dir(SupervisorDir)) })
	w := newWatcher(tree, WatchConfig{Limits: l, Plan: plan})
	if _, err := w.ensureLeaf("leaf"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w.guardLimits(ctx)
	if len(w.out) != 0 {
		t.Fatalf("the applied plan drifted: %v", <-w.out)
	}
	for _, f := range []string{WorkloadDir + "/memory.max", WorkloadDir + "/memory.swap.max", AgentsDir + "/memory.high", AgentsDir + "/pids.max", AgentsDir + "/leaf/memory.max"} {
		if err := writeFile(tree.Dir(path.Dir(f)), path.Base(f), "max"); err != nil {
			t.Fatal(err)
		}
	}
	restored := guardOnce(ctx, t, w)
	want := map[string]string{
		WorkloadDir + "/memory.max":      "536870912",
		WorkloadDir + "/memory.swap.max": "0",
		AgentsDir + "/memory.high":       "402653184",
		AgentsDir + "/pids.max":          "500",
		AgentsDir + "/leaf/memory.max":   "268435456",
	}
	check := func(want map[string]string) {
		t.Helper()
		for f, v := range want {
			if e, ok := restored[f]; !ok || e.Restored != v || e.Found != "max" {
				t.Errorf("%s: event %+v, want found max, restored %s", f, e, v)
			}
			if b, err := readFile(tree.Dir(path.Dir(f)), path.Base(f)); err != nil || strings.TrimSpace(string(b)) != v {
				t.Errorf("%s reads %q (%v) after the look, want %s", f, b, err, v)
			}
		}
	}
	check(want)
	// Now the controller: out of agents/ (the leaves lose memory.max), then out of workload/
	// (agents/ loses memory.high). One look brings back the controllers and the limits below.
	for _, d := range []string{AgentsDir, WorkloadDir} {
		if err := writeFile(tree.Dir(d), "cgroup.subtree_control", "-memory"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(tree.Dir(AgentsDir + "/memory.high")); err == nil {
		t.Fatal("agents/memory.high still there with memory off in workload/")
	}
	restored = map[string]LimitRestored{}
	w.guardLimits(ctx)
	for len(w.out) > 0 {
		switch e := (<-w.out).(type) {
		case LimitRestored:
			restored[e.File] = e
		case Warning:
			t.Errorf("warning: %v", e.Err)
		}
	}
	for _, d := range []string{WorkloadDir, AgentsDir} {
		f := d + "/cgroup.subtree_control"
		if e := restored[f]; e.Restored != "+memory" {
			t.Errorf("%s: event %+v, want +memory restored", f, e)
		}
	}
	delete(want, WorkloadDir+"/memory.max") // on workload/ itself: the unit's controllers hold it
	delete(want, WorkloadDir+"/memory.swap.max")
	check(want)
}

func guardCoreFilesOnHost(t *testing.T, tree *Tree) {
	plan := []Step{
		write(WorkloadDir, "cgroup.max.descendants", "100"),
		write(AgentsDir, "cgroup.max.depth", "3"),
	}
	if _, err := tree.Apply(plan, 0); err != nil {
		t.Fatal(err)
	}
	w := newWatcher(tree, WatchConfig{Plan: plan})
	ctx := context.Background()
	w.guardLimits(ctx)
	if len(w.out) != 0 {
		t.Fatalf("the applied plan drifted: %v", <-w.out)
	}
	for _, s := range plan {
		if err := writeFile(tree.Dir(s.Dir), s.File, "max"); err != nil {
			t.Fatal(err)
		}
	}
	restored := guardOnce(ctx, t, w)
	for _, s := range plan {
		f := path.Join(s.Dir, s.File)
		if e, ok := restored[f]; !ok || e.Found != "max" || e.Restored != s.Value {
			t.Errorf("%s: event %+v, want found max, restored %s", f, e, s.Value)
		}
		if b, err := readFile(tree.Dir(s.Dir), s.File); err != nil || strings.TrimSpace(string(b)) != s.Value {
			t.Errorf("%s reads %q (%v) after the look, want %s", f, b, err, s.Value)
		}
	}
	// Said once: the next look finds everything in order.
	w.guardLimits(ctx)
	if len(w.out) != 0 {
		t.Errorf("a second look reported %v", <-w.out)
	}
}

// guardOnce runs one look of the limit guard and returns what it restored, by file; a warning
// fails the test.
func guardOnce(ctx context.Context, t *testing.T, w *watcher) map[string]LimitRestored {
	t.Helper()
	w.guardLimits(ctx)
	restored := map[string]LimitRestored{}
	for len(w.out) > 0 {
		switch e := (<-w.out).(type) {
		case LimitRestored:
			restored[e.File] = e
		case Warning:
			t.Errorf("warning: %v", e.Err)
		}
	}
	return restored
}
