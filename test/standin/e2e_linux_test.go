package main

// End-to-end tests of the built stand-in (CGO_ENABLED=0, as `make tools` builds it, or the binary
// in T3S_STANDIN): real processes, real signals, real memory. They run one after another: the
// cleanup reaps orphans, which must not race with another test's Wait.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"t3-supervise/internal/procstat"
)

// testToken is a fake credential; the stand-in must show its fingerprint, never its value.
const testToken = "sk-ant-oat01-STANDIN-TEST-not-a-real-token"

var built struct {
	once      sync.Once
	dir, path string
	err       error
}

func TestMain(m *testing.M) {
	// Orphans of the processes under test (agents whose server died, setsid'd sleepers) come to
	// us instead of PID 1, which in a container may never reap them; the cleanup reaps them.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// binary is the stand-in under test: $T3S_STANDIN, or this package built as `make tools` does.
func binary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("T3S_STANDIN"); p != "" {
		return p
	}
	built.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if built.dir, built.err = os.MkdirTemp("", "standin-test-"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "standin")
		cmd := exec.Command(goTool, "build", "-trimpath", "-o", built.path, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// standin is one `t3 serve` under test and everything it spawns.
type standin struct {
	t      *testing.T
	dir    string // temp dir: bin/ (t3, claude: on PATH), sdk/claude (the absolute agent)
	url    string
	marker string // KEY=VALUE in the environment of every process it starts
	report string // the first line on stdout
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line
	stdout []string    // ... every line read so far, for failure reports
	mu     sync.Mutex
	done   chan struct{} // closed when Wait returned
	state  *os.ProcessState
}

// startStandin starts `t3 serve` on a free loopback port with env added to a small environment,
// and returns once it printed its report line. The cleanup kills and reaps every process whose
// environment carries the test's marker, and fails the test if one survives.
func startStandin(t *testing.T, env ...string) *standin {
	t.Helper()
	bin := binary(t)
	dir := t.TempDir()
	for _, link := range []string{"bin/t3", "bin/claude", "sdk/claude"} {
		p := filepath.Join(dir, link)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(bin, p); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	s := &standin{
		t:      t,
		dir:    dir,
		url:    "http://127.0.0.1:" + port,
		marker: fmt.Sprintf("T3_STANDIN_TEST_MARKER=%d-%d", os.Getpid(), time.Now().UnixNano()),
		lines:  make(chan string, 1024),
		done:   make(chan struct{}),
	}
	s.cmd = exec.Command(filepath.Join(dir, "bin/t3"), "serve", "--host", "127.0.0.1", "--port", port, "--base-dir", filepath.Join(dir, "base"))
	s.cmd.Dir = dir
	s.cmd.Env = append([]string{
		"PATH=" + filepath.Join(dir, "bin") + ":/usr/bin:/bin",
		"HOME=" + dir,
		"T3_STANDIN_CLAUDE=" + filepath.Join(dir, "sdk/claude"),
		"CLAUDE_CODE_OAUTH_TOKEN=" + testToken,
		s.marker,
	}, env...)
	stderr, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = outW, stderr
	err = s.cmd.Start()
	outW.Close()
	if err != nil {
		outR.Close()
		t.Fatal(err)
	}
	go func() {
		defer close(s.lines)
		defer outR.Close()
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			s.mu.Lock()
			s.stdout = append(s.stdout, sc.Text())
			s.mu.Unlock()
			s.lines <- sc.Text()
		}
	}()
	go func() {
		_ = s.cmd.Wait() // the only Wait; the state is read after done is closed
		s.state = s.cmd.ProcessState
		close(s.done)
	}()
	t.Cleanup(s.cleanup)
	s.report = s.waitLine("t3-standin: pid=")
	return s
}

// waitLine returns the next stdout line that starts with prefix, failing after 10 s.
func (s *standin) waitLine(prefix string) string {
	s.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("stdout ended before a line %q", prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timeout:
			s.t.Fatalf("no line %q on stdout within 10 s", prefix)
		}
	}
}

// exitCode waits for the server to exit and returns its status.
func (s *standin) exitCode() int {
	s.t.Helper()
	select {
	case <-s.done:
		return s.state.ExitCode()
	case <-time.After(10 * time.Second):
		s.t.Fatal("t3 serve did not exit within 10 s")
		return -1
	}
}

func (s *standin) cleanup() {
	t := s.t
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
	}
	killed := map[int]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pids := marked(s.marker)
		reapOrphans(s.cmd.Process.Pid)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			killed[pid] = true
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Error("t3 serve was not reaped within 10 s of SIGKILL")
	}
	reapOrphans(0)
	if left := marked(s.marker); len(left) > 0 {
		t.Errorf("processes %v survived SIGKILL", left)
	}
	if t.Failed() {
		s.mu.Lock()
		t.Logf("stdout of t3 serve:\n%s", strings.Join(s.stdout, "\n"))
		s.mu.Unlock()
		b, _ := os.ReadFile(filepath.Join(s.dir, "stderr.log"))
		t.Logf("stderr of t3 serve and its agents:\n%s", b)
	}
	t.Logf("cleanup killed %d leftover process(es)", len(killed))
}

// marked lists the live processes whose environment holds marker (a KEY=VALUE entry). A zombie
// has no environment left and is not listed.
func marked(marker string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if string(kv) == marker {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// reapOrphans waits for our zombie children other than skip (whose exec.Cmd waits for it):
// processes orphaned under test and reparented to us, the subreaper.
func reapOrphans(skip int) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == skip {
			continue
		}
		if st, err := procstat.Read(pid); err == nil && st.PPID == os.Getpid() && st.State == 'Z' {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// client opens a connection per request: a kept-alive one survives a dropped listener.
var client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// call sends method to the stand-in's path and returns status and body.
func (s *standin) call(method, path string) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// api calls path, requires 200, and decodes the JSON answer into v (unless nil).
func (s *standin) api(method, path string, v any) {
	s.t.Helper()
	code, b := s.call(method, path)
	if code != http.StatusOK {
		s.t.Fatalf("%s %s: %d %s", method, path, code, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			s.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10 s waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// statusKB reads a "kB" field of /proc/PID/status (VmRSS, RssAnon); -1 if unreadable.
func statusKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return -1
}

func procFile(pid int, name string) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	return strings.TrimSpace(string(b))
}

func argv0(pid int) string {
	a, _, _ := strings.Cut(procFile(pid, "cmdline"), "\x00")
	return a
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	st, err := procstat.Read(pid)
	return err == nil && st.State != 'Z' && st.State != 'X'
}

func mustStat(t *testing.T, pid int) procstat.Stat {
	t.Helper()
	st, err := procstat.Read(pid)
	if err != nil {
		t.Fatalf("pid %d: %v", pid, err)
	}
	return st
}

// The stand-in as t3 serve: its report, agents spawned through PATH and by absolute path, a
// balloon that is really resident under the requested comm, the livelock, a setsid'd process
// that outlives its agent, and signals.
func TestServeEndToEnd(t *testing.T) {
	s := startStandin(t)
	server := s.cmd.Process.Pid

	report := s.report
	sum := sha256.Sum256([]byte(testToken))
	for _, want := range []string{
		fmt.Sprintf("t3-standin: pid=%d ", server), `"serve" "--host" "127.0.0.1" "--port"`,
		" HOME=" + s.dir + " ", "CLAUDE_CODE_OAUTH_TOKEN=set sha256:" + hex.EncodeToString(sum[:6]),
		"T3_STANDIN_CLAUDE T3_STANDIN_TEST_MARKER]",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report line lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, testToken) || strings.Contains(report, s.marker) {
		t.Errorf("report line shows a value it must not:\n%s", report)
	}
	s.waitLine("t3-standin: listening on http://127.0.0.1:")

	if code, body := s.call("GET", "/"); code != 200 || !strings.Contains(string(body), "t3-standin") {
		t.Fatalf("GET /: %d %s", code, body)
	}

	// Agents: one through PATH (a supervisor's shim would come first there), one by absolute path.
	var agents []agentView
	s.api("POST", "/_standin/agents?n=2&abs=1", &agents)
	if len(agents) != 2 {
		t.Fatalf("spawned %+v", agents)
	}
	a0, a1 := agents[0], agents[1]
	if a0.ID != 0 || a0.Via != viaPath || a0.Path != filepath.Join(s.dir, "bin/claude") || argv0(a0.PID) != "claude" {
		t.Errorf("agent 0 = %+v, argv0 %q; want via path, argv0 claude", a0, argv0(a0.PID))
	}
	if a1.ID != 1 || a1.Via != viaAbsolute || a1.Path != filepath.Join(s.dir, "sdk/claude") || argv0(a1.PID) != a1.Path {
		t.Errorf("agent 1 = %+v, argv0 %q; want via absolute, argv0 its path", a1, argv0(a1.PID))
	}
	for _, a := range agents {
		if st := mustStat(t, a.PID); st.PPID != server || st.Comm != "claude" {
			t.Errorf("agent pid %d: ppid %d comm %q; want a child of %d named claude", a.PID, st.PPID, st.Comm, server)
		}
	}

	// A balloon of 8 MiB at 64 MiB/s with the version-string comm production saw.
	var balloon struct {
		PID, Agent  int
		Comm        string
		Rate, Limit int64
		Started     int64 `json:"started_monotonic_usec"`
	}
	before := monotonicUsec()
	s.api("POST", "/_standin/balloon?agent=0&rate=64M&limit=8M&comm=2.1.205", &balloon)
	after := monotonicUsec()
	tool := balloon.PID
	if balloon.Agent != 0 || balloon.Comm != "2.1.205" || balloon.Rate != 64<<20 || balloon.Limit != 8<<20 {
		t.Errorf("balloon answer %+v", balloon)
	}
	if balloon.Started < before || balloon.Started > after {
		t.Errorf("balloon started at %d µs, not on CLOCK_MONOTONIC within the request [%d, %d]", balloon.Started, before, after)
	}
	waitFor(t, "the balloon's RssAnon to reach 8 MiB", func() bool { return statusKB(tool, "RssAnon") >= 8<<10 })
	time.Sleep(200 * time.Millisecond) // it must stop at its limit
	if anon := statusKB(tool, "RssAnon"); anon > 16<<10 {
		t.Errorf("balloon RssAnon %d kB: more than 8 MiB plus a Go runtime", anon)
	}
	if comm := procFile(tool, "comm"); comm != "2.1.205" {
		t.Errorf("balloon comm %q, want 2.1.205", comm)
	}
	if st := mustStat(t, tool); st.PPID != a0.PID {
		t.Errorf("balloon's parent is %d, want agent 0 (pid %d)", st.PPID, a0.PID)
	}
	if a := argv0(tool); a != "2.1.205" {
		t.Errorf("balloon argv[0] %q, want its comm", a)
	}
	s.api("GET", "/_standin/agents", &agents)
	if tl := agents[0].Tools; len(tl) != 1 || tl[0].PID != tool || !tl[0].Alive || tl[0].Comm != "2.1.205" {
		t.Errorf("agent 0 tools %+v", tl)
	}

	// Errors name the problem.
	for path, want := range map[string]string{
		"/_standin/balloon?agent=9":                          "no such agent",
		"/_standin/balloon?agent=0&comm=far-too-long-a-name": "want 1..15 bytes",
		"/_standin/balloon?agent=0&rate=fast":                "rate: size",
		"/_standin/agents?n=2&abs=3":                         "abs=",
	} {
		if code, body := s.call("POST", path); code == 200 || !strings.Contains(string(body), want) {
			t.Errorf("POST %s: %d %s; want an error with %q", path, code, body, want)
		}
	}

	// The livelock: the port accepts, GET / never answers, the control API does.
	s.api("POST", "/_standin/hang", nil)
	quick := &http.Client{Timeout: 300 * time.Millisecond}
	if resp, err := quick.Get(s.url + "/"); err == nil {
		resp.Body.Close()
		t.Error("GET / answered while hanging")
	}
	held := make(chan error, 1)
	go func() {
		resp, err := client.Get(s.url + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = errors.New(resp.Status)
			}
		}
		held <- err
	}()
	var st struct{ Hanging bool }
	s.api("GET", "/_standin/", &st)
	if !st.Hanging {
		t.Error("status does not say hanging")
	}
	time.Sleep(100 * time.Millisecond)
	s.api("POST", "/_standin/unhang", nil)
	if err := <-held; err != nil {
		t.Errorf("a GET / held by the hang: %v after unhang", err)
	}

	// A setsid'd grandchild outlives its agent.
	var sleeper struct{ PID, Agent int }
	s.api("POST", "/_standin/spawn-setsid?agent=1", &sleeper)
	if st := mustStat(t, sleeper.PID); st.Session != sleeper.PID || st.PPID != a1.PID {
		t.Errorf("sleeper: sid %d ppid %d; want its own session, child of agent 1 (pid %d)", st.Session, st.PPID, a1.PID)
	}
	if err := unix.Kill(a1.PID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "agent 1 reported dead", func() bool {
		s.api("GET", "/_standin/agents", &agents)
		return !agents[1].Alive
	})
	if agents[1].Exit != "signal: killed" || len(agents[1].Sleepers) != 1 || !agents[1].Sleepers[0].Alive {
		t.Errorf("agent 1 after SIGKILL: %+v", agents[1])
	}
	if code, body := s.call("POST", "/_standin/balloon?agent=1"); code != http.StatusConflict {
		t.Errorf("balloon in a dead agent: %d %s", code, body)
	}

	// SIGHUP is logged and changes nothing.
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.waitLine("t3-standin: SIGHUP")
	if code, _ := s.call("GET", "/"); code != 200 {
		t.Errorf("GET / after SIGHUP: %d", code)
	}

	// SIGTERM: exit 0, agents and their tools left running for the supervisor to clean up.
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := s.exitCode(); code != 0 {
		t.Errorf("exit status after SIGTERM: %d, want 0", code)
	}
	time.Sleep(100 * time.Millisecond)
	for what, pid := range map[string]int{"agent 0": a0.PID, "the balloon": tool, "the sleeper": sleeper.PID} {
		if !running(pid) {
			t.Errorf("%s (pid %d) died with the server", what, pid)
		}
	}
}

// A slow start, agents from the environment, a dropped listener, a server that balloons, and an
// exit status on request.
func TestServeSlowStartDropAndExit(t *testing.T) {
	start := time.Now()
	s := startStandin(t, "T3_STANDIN_READY_DELAY=500ms", "T3_STANDIN_AGENTS=3", "T3_STANDIN_AGENTS_ABS=1")
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.url, "http://"), time.Second); err == nil {
		c.Close()
		t.Error("the port accepts before T3_STANDIN_READY_DELAY passed")
	}
	s.waitLine("t3-standin: listening on ")
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("listening after %v, before T3_STANDIN_READY_DELAY=500ms", took)
	}
	var agents []agentView
	s.api("GET", "/_standin/agents", &agents)
	if len(agents) != 3 || agents[0].Via != viaPath || agents[1].Via != viaPath || agents[2].Via != viaAbsolute {
		t.Errorf("agents at start: %+v", agents)
	}

	// The listener dropped: connections refused, then accepted again.
	s.api("POST", "/_standin/drop-listener?for=300ms", nil)
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.url, "http://"), time.Second); err == nil {
		c.Close()
		t.Error("the port accepts right after drop-listener")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after drop-listener: %v; want connection refused", err)
	}
	waitFor(t, "GET / to answer after the listener came back", func() bool {
		resp, err := client.Get(s.url + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	// The server itself balloons.
	pid := s.cmd.Process.Pid
	before := statusKB(pid, "RssAnon")
	var self struct {
		PID     int
		Started int64 `json:"started_monotonic_usec"`
	}
	t0 := monotonicUsec()
	s.api("POST", "/_standin/balloon-self?rate=256M&limit=16M", &self)
	if self.PID != pid || self.Started < t0 || self.Started > monotonicUsec() {
		t.Errorf("balloon-self answer %+v: want pid %d, started on CLOCK_MONOTONIC after %d", self, pid, t0)
	}
	waitFor(t, "the server's RssAnon to grow by 16 MiB", func() bool { return statusKB(pid, "RssAnon") >= before+16<<10 })

	var exiting struct{ Exiting int }
	s.api("POST", "/_standin/exit?code=7", &exiting)
	if exiting.Exiting != 7 {
		t.Errorf("exit answer %+v", exiting)
	}
	if code := s.exitCode(); code != 7 {
		t.Errorf("exit status %d, want 7", code)
	}
}

// Invocations the real t3 would refuse fail with status 2 and say why.
func TestServeRejectsBadInvocations(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	t3 := filepath.Join(dir, "t3")
	if err := os.Symlink(bin, t3); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		argv []string
		env  []string
		want string
	}{
		{[]string{t3, "serve", "--host", "127.0.0.1"}, nil, "--port is required"},
		{[]string{t3, "serve", "--port", ""}, nil, `--port "": not a port number`},
		{[]string{t3, "serve", "--port", "1", "--verbose"}, nil, "unknown flag --verbose"},
		{[]string{t3, "serve", "--port", freePort(t)}, []string{"T3_STANDIN_READY_DELAY=soon"}, "T3_STANDIN_READY_DELAY"},
		{[]string{t3, "serve", "--port", freePort(t)}, []string{"T3_STANDIN_AGENTS_ABS=1", "T3_STANDIN_AGENTS=1"}, "needs T3_STANDIN_CLAUDE"},
		{[]string{bin}, nil, "standin ROLE"},
		{[]string{bin, "tool", "--rate", "0"}, nil, "must be positive"},
		{[]string{bin, "tool", "--comm", "much-too-long-comm"}, nil, "want 1..15 bytes"},
	} {
		cmd := exec.Command(tc.argv[0], tc.argv[1:]...)
		cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, tc.env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q %q: %v, stderr %q; want status 2 and %q", tc.argv, tc.env, err, stderr.String(), tc.want)
		}
	}
}

// The agent's line protocol, and what it does when its stdin closes.
func TestAgentProtocol(t *testing.T) {
	bin := binary(t)
	for _, exitOnEOF := range []bool{false, true} {
		t.Run(fmt.Sprintf("exit_on_eof=%t", exitOnEOF), func(t *testing.T) {
			marker := fmt.Sprintf("T3_STANDIN_TEST_MARKER=agent-%d", time.Now().UnixNano())
			cmd := exec.Command(bin, "claude", "--output-format", "stream-json")
			cmd.Env = []string{"PATH=/usr/bin:/bin", marker}
			if exitOnEOF {
				cmd.Env = append(cmd.Env, "T3_STANDIN_AGENT_EXIT_ON_EOF=1")
			}
			// Files and pipes of our own, not os/exec's copying goroutines: the tool inherits the
			// agent's stderr, and Wait would wait for it too.
			stderrPath := filepath.Join(t.TempDir(), "stderr.log")
			stderrFile, err := os.Create(stderrPath)
			if err != nil {
				t.Fatal(err)
			}
			defer stderrFile.Close()
			stderr := func() string { b, _ := os.ReadFile(stderrPath); return string(b) }
			inR, stdin, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, outW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stdout.Close()
			cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, stderrFile
			err = cmd.Start()
			inR.Close()
			outW.Close()
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }() // the only Wait
			t.Cleanup(func() {
				for _, pid := range marked(marker) {
					_ = unix.Kill(pid, unix.SIGKILL)
				}
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Error("agent not reaped")
				}
				waitFor(t, "the agent's tools to die", func() bool { reapOrphans(0); return len(marked(marker)) == 0 })
				if t.Failed() {
					t.Logf("agent stderr:\n%s", stderr())
				}
			})
			answers := bufio.NewScanner(stdout)
			ask := func(line string) string {
				t.Helper()
				if _, err := io.WriteString(stdin, line+"\n"); err != nil {
					t.Fatal(err)
				}
				if !answers.Scan() {
					t.Fatalf("no answer to %q: %v", line, answers.Err())
				}
				return answers.Text()
			}
			if got := ask("ping"); got != fmt.Sprintf("ok %d", cmd.Process.Pid) {
				t.Errorf("ping: %q", got)
			}
			for _, bad := range []string{"", "bogus", "tool rg 0 0", "tool rg 1M", "tool much-too-long-comm 1M 0", "setsid now"} {
				if got := ask(bad); !strings.HasPrefix(got, "err ") {
					t.Errorf("%q: %q, want err ...", bad, got)
				}
			}
			got := ask("tool ugrep 1M 4K")
			pid, err := parseAnswer(got)
			if err != nil {
				t.Fatalf("tool: %v", err)
			}
			waitFor(t, "the tool's comm", func() bool { return procFile(pid, "comm") == "ugrep" })
			stdin.Close()
			if exitOnEOF {
				select {
				case err := <-done:
					done <- err
					if err != nil {
						t.Errorf("agent after EOF with T3_STANDIN_AGENT_EXIT_ON_EOF=1: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Error("agent did not exit after EOF with T3_STANDIN_AGENT_EXIT_ON_EOF=1")
				}
			} else {
				select {
				case err := <-done:
					done <- err
					t.Errorf("agent exited after EOF: %v; it must stay until signalled", err)
				case <-time.After(300 * time.Millisecond):
				}
				waitFor(t, "the agent's line about EOF", func() bool { return strings.Contains(stderr(), "stdin closed; staying alive") })
			}
			if !running(pid) {
				t.Errorf("tool pid %d died with its agent's stdin", pid)
			}
		})
	}
}

// T3_STANDIN_SIGHUP=die: no handler, so a SIGHUP kills the server by signal 1, as it kills a Node
// server without one (T3's). The supervisor's tests need a t3 that a forwarded SIGHUP would kill.
func TestServeDiesOfSIGHUPLikeNode(t *testing.T) {
	s := startStandin(t, "T3_STANDIN_SIGHUP=die")
	s.waitLine("t3-standin: listening on ")
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.exitCode()
	ws, _ := s.state.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGHUP {
		t.Errorf("after SIGHUP: %v; want killed by SIGHUP", s.state)
	}
}

// An agent spawned with arguments is a real agent CLI run for one turn (`claude -p PROMPT
// --allowedTools Bash`): its argv carries them after argv[0], its stdin is at EOF, its stdout is
// the server's stderr, and it takes no commands.
func TestServeAgentWithArguments(t *testing.T) {
	s := startStandin(t, "T3_STANDIN_AGENT_EXIT_ON_EOF=1")
	s.waitLine("t3-standin: listening on http://127.0.0.1:")
	var agents []agentView
	s.api("POST", "/_standin/agents?arg=-p&arg=say+hello&arg=--allowedTools&arg=Bash", &agents)
	if len(agents) != 1 {
		t.Fatalf("spawned %+v", agents)
	}
	a := agents[0]
	want := []string{"-p", "say hello", "--allowedTools", "Bash"}
	if !slices.Equal(a.Args, want) {
		t.Errorf("agent args %q, want %q", a.Args, want)
	}
	// The stand-in agent exits at EOF of its stdin (T3_STANDIN_AGENT_EXIT_ON_EOF=1): an open
	// pipe would keep it, as it would keep `claude -p`, waiting.
	waitFor(t, "the agent to exit at EOF of its stdin", func() bool {
		s.api("GET", "/_standin/agents", &agents)
		return !agents[0].Alive
	})
	if agents[0].Exit != "exit status 0" {
		t.Errorf("agent exit %q, want exit status 0", agents[0].Exit)
	}
	stderr, _ := os.ReadFile(filepath.Join(s.dir, "stderr.log"))
	if !strings.Contains(string(stderr), fmt.Sprintf("pid=%d ", a.PID)) || !strings.Contains(string(stderr), "stdin closed; exiting") {
		t.Errorf("the agent's report and EOF are not on the server's stderr:\n%s", stderr)
	}
	if l := s.waitLine("t3-standin: agent 0 spawned:"); !strings.HasSuffix(l, ` args=["-p" "say hello" "--allowedTools" "Bash"]`) {
		t.Errorf("the server's log of the spawn does not name the arguments: %s", l)
	}

	// A second one that stays (it is signalled by the cleanup): its argv, stdin, stdout, and
	// no commands.
	s2 := startStandin(t)
	s2.waitLine("t3-standin: listening on http://127.0.0.1:")
	s2.api("POST", "/_standin/agents?arg=-p&arg=x", &agents)
	pid := agents[0].PID
	if got := procFile(pid, "cmdline"); got != "claude\x00-p\x00x\x00" {
		t.Errorf("agent cmdline %q", got)
	}
	if in, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", pid)); in != os.DevNull {
		t.Errorf("agent stdin is %q, want %s", in, os.DevNull)
	}
	if out, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/1", pid)); out != filepath.Join(s2.dir, "stderr.log") {
		t.Errorf("agent stdout is %q, want the server's stderr", out)
	}
	if code, body := s2.call("POST", "/_standin/balloon?agent=0"); code == 200 || !strings.Contains(string(body), "takes no commands") {
		t.Errorf("balloon on a real agent: %d %s; want an error saying it takes no commands", code, body)
	}
}
