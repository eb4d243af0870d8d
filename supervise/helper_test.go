package supervise

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"t3-supervise/internal/procstat"
)

// The test binary re-executes itself as the fake `t3` (os/exec's own tests do the same): the
// mode comes in SUPERVISE_HELPER, and the helper reports on stdout, one line per fact.
const helperEnv = "SUPERVISE_HELPER"

func TestMain(m *testing.M) {
	if mode, ok := os.LookupEnv(helperEnv); ok {
		helper(mode)
		os.Exit(0)
	}
	// The SIGHUP storm of TestNotifyStopSurvivesReloadStorm can outlive its subscription: a
	// thread that dequeued one of them may run the handler after the test's Close, and Go's
	// default for an unwanted SIGHUP is to exit (os/signal). A subscription for the binary's
	// whole life keeps a straggler from ending the tests that follow (seen once under load).
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
	// Without a cgroup the real run makes the supervisor a subreaper; so does the test process,
	// else a grandchild orphaned by its parent's death would escape to PID 1.
	if err := SetSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

type report struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	Pid  int      `json:"pid"`
}

func helper(mode string) {
	name, arg, _ := strings.Cut(mode, ":")
	say := func(format string, a ...any) { fmt.Printf(format+"\n", a...) }
	switch name {
	case "report": // prints its argv and environment, then exits 0
		b, _ := json.Marshal(report{Argv: os.Args, Env: os.Environ(), Pid: os.Getpid()})
		say("%s", b)
	case "exit": // exits with the given code
		n, _ := strconv.Atoi(arg)
		os.Exit(n)
	case "signal-self": // dies of the given (asynchronous) signal
		n, _ := strconv.Atoi(arg)
		_ = syscall.Kill(os.Getpid(), syscall.Signal(n))
		time.Sleep(10 * time.Second)
	case "hang": // waits until killed; SIGTERM (default action) ends it
		say("ready %d", os.Getpid())
		select {}
	case "ignore-term": // survives SIGTERM; only SIGKILL ends it
		signal.Ignore(syscall.SIGTERM)
		say("ready %d", os.Getpid())
		select {}
	case "hup": // prints a line for every SIGHUP, exits 0 on SIGTERM
		c := make(chan os.Signal, 8)
		signal.Notify(c, syscall.SIGHUP, syscall.SIGTERM)
		say("ready %d", os.Getpid())
		for s := range c {
			if s == syscall.SIGTERM {
				os.Exit(0)
			}
			say("hup")
		}
	case "grandchildren": // spawns N grandchildren that ignore SIGTERM, prints their pids, hangs
		n, _ := strconv.Atoi(arg)
		for i := 0; i < n; i++ {
			say("grandchild %d", spawnHelper("ignore-term", false))
		}
		say("ready %d", os.Getpid())
		select {}
	case "supervisor": // starts a "hang" child through Start, as the supervisor does; prints its pid, hangs
		c, err := Start(Config{Path: os.Args[0], Env: []string{helperEnv + "=hang"}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(98)
		}
		say("child %d", c.Pid())
		select {}
	case "orphan": // spawns a setsid'd grandchild, prints its pid and exits, leaving it orphaned
		say("grandchild %d", spawnHelper("ignore-term", true))
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
		os.Exit(99)
	}
}

// spawnHelper starts another helper and returns once it said "ready".
func spawnHelper(mode string, setsid bool) int {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: setsid}
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if !strings.HasPrefix(line, "ready") {
		panic("helper did not get ready: " + line)
	}
	return cmd.Process.Pid
}

// helperConfig is a Config that runs this test binary in the given mode.
func helperConfig(t *testing.T, mode string) (Config, *bufio.Reader) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return Config{
		Path:   os.Args[0],
		Env:    []string{helperEnv + "=" + mode, "PATH=" + os.Getenv("PATH")},
		Stdout: w,
		Stderr: os.Stderr,
	}, bufio.NewReader(r)
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	type res struct {
		s   string
		err error
	}
	c := make(chan res, 1)
	go func() { s, err := r.ReadString('\n'); c <- res{s, err} }()
	select {
	case x := <-c:
		if x.err != nil {
			t.Fatalf("reading the helper's output: %v", x.err)
		}
		return strings.TrimSpace(x.s)
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the helper's output")
		return ""
	}
}

func alive(pid int) bool {
	st, err := procstat.Read(pid)
	return err == nil && st.State != 'Z'
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
