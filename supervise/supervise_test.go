package supervise

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"t3-supervise/internal/procstat"
)

func TestBuildEnv(t *testing.T) {
	parent := []string{
		"HOME=/home/alice", "PATH=/usr/bin", "T3_PORT=3773", "T3CODE_X=1", "LC_ALL=C",
		"VAULT_TOKEN=hvs.secret", "VAULT_ADDR=http://127.0.0.1:8200", "NOTIFY_SOCKET=/run/notify",
		"WATCHDOG_USEC=1000", "WATCHDOG_PID=1", "CREDENTIALS_DIRECTORY=/run/credentials/x",
		"LISTEN_FDS=1", "RANDOM_THING=1", "CLAUDE_CODE_OAUTH_TOKEN=inherited", "malformed",
	}
	env, dropped := BuildEnv(parent, append(DefaultAllow, "VAULT_ADDR"), map[string]string{"CLAUDE_CODE_OAUTH_TOKEN": "ours"})
	want := []string{
		"CLAUDE_CODE_OAUTH_TOKEN=ours", "HOME=/home/alice", "LC_ALL=C", "PATH=/usr/bin", "T3CODE_X=1", "T3_PORT=3773",
	}
	if !reflect.DeepEqual(env, want) {
		t.Errorf("env = %q, want %q", env, want)
	}
	wantDropped := []string{"CREDENTIALS_DIRECTORY", "LISTEN_FDS", "NOTIFY_SOCKET", "RANDOM_THING", "VAULT_ADDR", "VAULT_TOKEN", "WATCHDOG_PID", "WATCHDOG_USEC"}
	if !reflect.DeepEqual(dropped, wantDropped) {
		t.Errorf("dropped = %q, want %q (VAULT_ADDR is denied even when allowed)", dropped, wantDropped)
	}
}

func TestBuildEnvDropsAnInheritedTokenWithoutReplacement(t *testing.T) {
	env, dropped := BuildEnv([]string{"CLAUDE_CODE_OAUTH_TOKEN=x", "HOME=/h"}, DefaultAllow, nil)
	if _, ok := Lookup(env, "CLAUDE_CODE_OAUTH_TOKEN"); ok {
		t.Errorf("an inherited token reached the child: %q", env)
	}
	if len(dropped) != 1 || dropped[0] != "CLAUDE_CODE_OAUTH_TOKEN" {
		t.Errorf("dropped = %q", dropped)
	}
}

func TestValidatePattern(t *testing.T) {
	for _, ok := range []string{"HOME", "T3_*", "LC_*", "*", "_X1"} {
		if err := ValidatePattern(ok); err != nil {
			t.Errorf("ValidatePattern(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "A*B", "1X", "A-B", "A=B", "**"} {
		if err := ValidatePattern(bad); err == nil {
			t.Errorf("ValidatePattern(%q) accepted", bad)
		}
	}
}

func TestStartPassesExactlyArgvAndEnv(t *testing.T) {
	cfg, out := helperConfig(t, "report")
	cfg.Args = []string{"serve", "--port", "3773", "--host", "0.0.0.0"}
	cfg.Env = append(cfg.Env, "HOME=/home/alice")
	c, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var r report
	if err := json.Unmarshal([]byte(readLine(t, out)), &r); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if got := c.Exit(); got.Status() != 0 {
		t.Errorf("exit = %v", got)
	}
	if r.Pid != c.Pid() {
		t.Errorf("pid %d reported, %d started", r.Pid, c.Pid())
	}
	if !reflect.DeepEqual(r.Argv[1:], cfg.Args) {
		t.Errorf("argv = %q, want %q", r.Argv[1:], cfg.Args)
	}
	if !reflect.DeepEqual(r.Env, cfg.Env) {
		t.Errorf("env = %q, want exactly %q", r.Env, cfg.Env)
	}
}

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want int
	}{
		{"exit:0", 0},
		{"exit:3", 3},
		{"exit:200", 200},
		{"signal-self:" + strconv.Itoa(int(syscall.SIGINT)), 130},
		{"signal-self:" + strconv.Itoa(int(syscall.SIGKILL)), 137},
	} {
		cfg, _ := helperConfig(t, tc.mode)
		c, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		<-c.Done()
		if got := c.Exit().Status(); got != tc.want {
			t.Errorf("%s: status %d (%v), want %d", tc.mode, got, c.Exit(), tc.want)
		}
	}
}

func TestStartFailures(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "t3")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, pathVar string
		code                int
	}{
		{"missing on PATH", "t3", dir + "/nowhere", ExitNotFound},
		{"missing absolute", filepath.Join(dir, "nope"), "", ExitNotFound},
		{"not executable on PATH", "t3", dir, ExitNotExecutable},
		{"not executable absolute", notExec, "", ExitNotExecutable},
		{"a directory", dir, "", ExitNotExecutable},
		{"relative PATH entries are ignored", "t3", ".", ExitNotFound},
	} {
		_, err := Start(Config{Path: tc.path, Env: []string{"PATH=" + tc.pathVar}})
		var se *StartError
		if !errors.As(err, &se) {
			t.Errorf("%s: err = %v, want a StartError", tc.name, err)
			continue
		}
		if se.Code != tc.code {
			t.Errorf("%s: code %d, want %d (%v)", tc.name, se.Code, tc.code, err)
		}
		if !strings.Contains(err.Error(), filepath.Base(tc.path)) {
			t.Errorf("%s: error %q does not name the program", tc.name, err)
		}
	}
}

func TestStopPolite(t *testing.T) {
	cfg, out := helperConfig(t, "hang")
	c, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	readLine(t, out)
	r := c.Stop(5 * time.Second)
	if r.Escalated {
		t.Error("escalated although the child obeys SIGTERM")
	}
	if r.Exit.Signal != syscall.SIGTERM || r.Exit.Status() != 143 {
		t.Errorf("exit = %v, want killed by SIGTERM (143)", r.Exit)
	}
	if r.Took > 2*time.Second {
		t.Errorf("polite stop took %v", r.Took)
	}
}

func TestStopEscalatesAfterGraceAndKillsGrandchildren(t *testing.T) {
	cfg, out := helperConfig(t, "grandchildren:3")
	c, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var grand []int
	for {
		line := readLine(t, out)
		if strings.HasPrefix(line, "ready") {
			break
		}
		pid, _ := strconv.Atoi(strings.TrimPrefix(line, "grandchild "))
		grand = append(grand, pid)
	}
	if len(grand) != 3 {
		t.Fatalf("grandchildren %v", grand)
	}
	// The child obeys SIGTERM at once, its grandchildren ignore it: they must be killed all
	// the same (TestMain made this process a subreaper, as the real run does without a cgroup).
	r := c.Stop(300 * time.Millisecond)
	if r.KillErr != nil {
		t.Fatal(r.KillErr)
	}
	for _, pid := range grand {
		waitGone(t, pid)
	}

	cfg, out = helperConfig(t, "ignore-term")
	c, err = Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	readLine(t, out)
	grace := 300 * time.Millisecond
	r = c.Stop(grace)
	if !r.Escalated {
		t.Error("not escalated although the child ignores SIGTERM")
	}
	if r.Exit.Signal != syscall.SIGKILL {
		t.Errorf("exit = %v, want SIGKILL", r.Exit)
	}
	if r.Took < grace || r.Took > grace+3*time.Second {
		t.Errorf("stop took %v with a grace of %v", r.Took, grace)
	}
}

func TestSubreaperCatchesSetsidOrphans(t *testing.T) {
	cfg, out := helperConfig(t, "orphan")
	c, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimPrefix(readLine(t, out), "grandchild "))
	<-c.Done()
	if !alive(pid) {
		t.Fatalf("orphan %d already gone", pid)
	}
	if ppid := parentOf(t, pid); ppid != os.Getpid() {
		t.Fatalf("orphan's parent is %d, want the subreaper %d", ppid, os.Getpid())
	}
	if err := c.Cleanup(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	deadline := time.Now().Add(5 * time.Second)
	for {
		// Earlier tests' killed grandchildren are this process's zombies too.
		if slices.Contains(ReapOrphans(-1), pid) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zombie %d was not reaped", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Errorf("pid %d still in /proc after reaping", pid)
	}
}

func parentOf(t *testing.T, pid int) int {
	st, err := procstat.Read(pid)
	if err != nil {
		t.Fatal(err)
	}
	return st.PPID
}

func TestSignalForwarding(t *testing.T) {
	cfg, out := helperConfig(t, "hup")
	c, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	readLine(t, out)
	for i := 0; i < 3; i++ {
		if err := c.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if got := readLine(t, out); got != "hup" {
			t.Fatalf("child said %q after SIGHUP", got)
		}
	}
	r := c.Stop(5 * time.Second)
	if r.Exit.Status() != 0 {
		t.Errorf("exit %v", r.Exit)
	}
	if err := c.Signal(syscall.SIGHUP); err != nil {
		t.Errorf("signalling an exited child: %v", err)
	}
}

// A storm of SIGHUPs must not crowd out the SIGTERM that follows it.
func TestNotifyStopSurvivesReloadStorm(t *testing.T) {
	s := Notify()
	defer s.Close()
	for i := 0; i < 1000; i++ {
		_ = syscall.Kill(os.Getpid(), syscall.SIGHUP)
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case sig := <-s.Stop:
		if sig != syscall.SIGTERM {
			t.Errorf("stop channel got %v", sig)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM lost after 1000 SIGHUPs")
	}
	select {
	case <-s.Reload:
	case <-time.After(time.Second):
		t.Error("no SIGHUP delivered at all")
	}
}

func FuzzBuildEnv(f *testing.F) {
	f.Add("HOME=/h\nVAULT_TOKEN=x\nT3_PORT=1\n=x\nnoequals", "T3_*")
	f.Fuzz(func(t *testing.T, parent, pattern string) {
		if ValidatePattern(pattern) != nil {
			return
		}
		env, _ := BuildEnv(strings.Split(parent, "\n"), []string{pattern, "HOME"}, nil)
		for _, kv := range env {
			name, _, _ := strings.Cut(kv, "=")
			if matchAny(Denied, name) {
				t.Fatalf("denied %s reached the child from %q with pattern %q", name, parent, pattern)
			}
		}
	})
}

// A supervisor that dies, of anything, SIGKILL included, must not leave t3 behind: the kernel
// kills the child when its parent goes (PR_SET_PDEATHSIG). The "supervisor" here is a helper
// process that starts a child through Start and is then SIGKILLed.
func TestChildDiesWithItsSupervisor(t *testing.T) {
	cfg, out := helperConfig(t, "supervisor")
	sup, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	line := readLine(t, out)
	child, err := strconv.Atoi(strings.TrimPrefix(line, "child "))
	if err != nil {
		t.Fatalf("helper said %q", line)
	}
	if !alive(child) {
		t.Fatalf("child %d not running", child)
	}
	if err := syscall.Kill(sup.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-sup.Done()
	waitGone(t, child)
}

// The main goroutine keeps the main thread for itself (locked from init: os/signal's and
// runtime.LockOSThread's documented idiom), so no test goroutine runs there: the runtime never
// ends the main thread, and a test watching a thread end must not land on it.
func init() { runtime.LockOSThread() }

// PR_SET_PDEATHSIG fires when the thread that forked the child exits, not the process
// (golang/go#27505). A caller of Start whose goroutine is locked to its thread and returns
// makes the runtime end that thread: the child must live on all the same.
func TestChildOutlivesTheThreadThatCalledStart(t *testing.T) {
	cfg, out := helperConfig(t, "hup")
	type started struct {
		c   *Child
		tid int
		err error
	}
	res := make(chan started)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		c, err := Start(cfg)
		res <- started{c, unix.Gettid(), err}
	}()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	readLine(t, out)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", r.tid)); errors.Is(err, fs.ErrNotExist) {
			break // the thread is gone, and with it any parent-death signal it would cause
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d did not end", r.tid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A pending SIGKILL would end the child before it could handle the SIGHUP sent after it.
	if err := r.c.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if got := readLine(t, out); got != "hup" {
		t.Fatalf("child said %q", got)
	}
	r.c.Stop(5 * time.Second)
}

// SIGQUIT is a stop like SIGTERM; left to Go's default it would end the supervisor with a
// goroutine dump in the middle of everything (and, before Pdeathsig, leave t3 behind).
func TestNotifySIGQUITIsAStop(t *testing.T) {
	s := Notify()
	defer s.Close()
	_ = syscall.Kill(os.Getpid(), syscall.SIGQUIT)
	select {
	case sig := <-s.Stop:
		if sig != syscall.SIGQUIT {
			t.Errorf("stop channel got %v", sig)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SIGQUIT never reached the stop channel")
	}
}
