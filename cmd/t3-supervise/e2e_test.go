//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"t3-supervise/internal/claudetest"
	"t3-supervise/internal/procstat"
)

// The end-to-end tests build the real binary once and run it against a fake `t3`: this test
// binary, re-executed through a symlink named t3 (the tailscale containerboot and os/exec
// model). The fake is told what to do by T3_FAKE_MODE, which reaches it because T3_* is on the
// default allowlist, and reports what it received to the file T3_FAKE_OUT.

var (
	supervisorBin string
	fakeT3Bin     string // a copy of this test binary that the run user can execute
	runUser       = ""   // the user the supervisor runs as: the current one, or nobody under root
)

// asRoot: the supervisor refuses to run t3 as root, so under root (CI) the tests start it with
// --user nobody, and it drops to nobody itself; everything it must read or write is nobody's.
var asRoot = os.Geteuid() == 0

const nobodyUID = 65534

func TestMain(m *testing.M) {
	if mode := os.Getenv("T3_FAKE_MODE"); mode != "" && filepath.Base(os.Args[0]) == "t3" {
		os.Exit(fakeT3(mode))
	}
	dir, err := os.MkdirTemp("", "t3s-e2e-")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755)
	self, _ := os.Executable()
	fakeT3Bin = filepath.Join(dir, "fake-t3")
	if err := copyFile(self, fakeT3Bin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if asRoot {
		runUser = "nobody"
	} else if me, err := user.Current(); err == nil {
		runUser = me.Username
	}
	supervisorBin = filepath.Join(dir, "t3-supervise")
	if b := os.Getenv("T3S_BIN"); b != "" {
		supervisorBin = b // the Makefile's freshly built binary
	} else {
		out, err := exec.Command("go", "build", "-o", supervisorBin, ".").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building t3-supervise: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	claudetest.Remove()
	os.RemoveAll(dir)
	if shortRefresh.bin != "" {
		os.RemoveAll(filepath.Dir(shortRefresh.bin))
	}
	if clockBuild.bin != "" {
		os.RemoveAll(filepath.Dir(clockBuild.bin))
	}
	os.Exit(code)
}

var shortRefresh struct {
	once sync.Once
	bin  string
	err  error
}

// shortRefreshBin is the supervisor built with a --refresh-interval floor of 1s instead of the
// operator's 1m (-ldflags -X main.refreshFloor=1s), for tests that watch several re-reads.
func shortRefreshBin(t *testing.T) string {
	t.Helper()
	shortRefresh.once.Do(func() {
		dir, err := os.MkdirTemp("", "t3s-short-refresh-")
		if err != nil {
			shortRefresh.err = err
			return
		}
		os.Chmod(dir, 0o755)
		shortRefresh.bin = filepath.Join(dir, "t3-supervise")
		out, err := exec.Command("go", "build", "-ldflags", "-X main.refreshFloor=1s", "-o", shortRefresh.bin, ".").CombinedOutput()
		if err != nil {
			shortRefresh.err = fmt.Errorf("building with a short refresh floor: %v\n%s", err, out)
		}
	})
	if shortRefresh.err != nil {
		t.Fatal(shortRefresh.err)
	}
	return shortRefresh.bin
}

// hostLanes bounds how many of the host tests that call parallel run at once, beside the three
// long claude busy tests (t.Parallel alone): more at once on two cores starved the claude
// account probe past T3's own 8 s limit there.
var hostLanes = make(chan struct{}, 2)

// parallel is t.Parallel for a host test that waits on Vault and t3 rather than computes: it
// runs beside the others in one of hostLanes. A test whose subtests call it must not.
func parallel(t *testing.T) {
	t.Helper()
	t.Parallel()
	hostLanes <- struct{}{}
	t.Cleanup(func() { <-hostLanes })
}

// fakeReport is what the fake t3 writes about itself.
type fakeReport struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	Pid  int      `json:"pid"`
	UID  int      `json:"uid"`
}

func fakeT3(mode string) int {
	out := os.Getenv("T3_FAKE_OUT")
	b, _ := json.Marshal(fakeReport{Argv: os.Args, Env: os.Environ(), Pid: os.Getpid(), UID: os.Getuid()})
	note := func(line string) {
		f, err := os.OpenFile(out, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
		if err == nil {
			fmt.Fprintln(f, line)
			f.Close()
		}
	}
	note(string(b))
	name, arg, _ := strings.Cut(mode, ":")
	sigs := make(chan os.Signal, 16)
	switch name {
	case "serve": // a server: runs until SIGTERM, then exits 0
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	case "exit":
		n, _ := strconv.Atoi(arg)
		return n
	case "signal-self":
		n, _ := strconv.Atoi(arg)
		syscall.Kill(os.Getpid(), syscall.Signal(n))
		time.Sleep(5 * time.Second)
		return 99
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		signal.Notify(sigs, syscall.SIGHUP)
	case "agent": // an agent at work: uses CPU (busy is judged by CPU time) until a signal ends it
		signal.Notify(sigs, syscall.SIGTERM)
		go func() { // about half a core: 50 ms of work, 50 ms of rest
			for {
				for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		<-sigs
		return 0
	case "serve-agent": // a server with one agent at work (its child), until SIGTERM
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "T3_FAKE_MODE=agent", "T3_FAKE_OUT="+out+".agent")
		if err := cmd.Start(); err != nil {
			return 98
		}
		note(fmt.Sprintf("agent %d", cmd.Process.Pid))
		go cmd.Wait() // reaped when it ends: a zombie would still count as a descendant
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	case "orphan": // leaves a setsid'd grandchild that ignores SIGTERM, then serves
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "T3_FAKE_MODE=ignore-term", "T3_FAKE_OUT="+out+".grandchild")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return 98
		}
		note(fmt.Sprintf("grandchild %d", cmd.Process.Pid))
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	}
	for s := range sigs {
		note("signal " + s.String())
		if s == syscall.SIGTERM {
			return 0
		}
	}
	return 0
}

// world is one test's private machine: a HOME, a PATH with the fake t3, an output file.
type world struct {
	t     *testing.T
	dir   string
	home  string
	bin   string
	out   string
	env   []string
	procs []*proc // every supervisor started, for the secret scan
	exe   string  // the supervisor binary; "" is supervisorBin
	user  string  // under root: the user the supervisor drops to (--user), owner of dir; "" is runUser
}

// copyFile copies an executable (mode 0755) in a child process, install(1), not here: the tests
// run in parallel, and a process forked by another test while this one held the new file open
// for writing keeps that descriptor until its own exec, so a start of the copy in that moment
// fails with ETXTBSY (execve(2); golang/go#22315).
func copyFile(from, to string) error {
	if out, err := exec.Command("install", "-m", "0755", from, to).CombinedOutput(); err != nil {
		return fmt.Errorf("install %s %s: %v: %s", from, to, err, out)
	}
	return nil
}

func newWorld(t *testing.T) *world {
	t.Helper()
	// Not t.TempDir: its parent is root's 0700, which nobody could not cross.
	dir, err := os.MkdirTemp("", "t3s-world-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	w := &world{t: t, dir: dir, home: filepath.Join(dir, "home"), bin: filepath.Join(dir, "bin"), out: filepath.Join(dir, "t3.out")}
	for _, d := range []string{w.home, w.bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(fakeT3Bin, filepath.Join(w.bin, "t3")); err != nil {
		t.Fatal(err)
	}
	w.env = []string{
		"HOME=" + w.home,
		"PATH=" + w.bin + ":/usr/bin:/bin",
		"T3_FAKE_OUT=" + w.out,
		"T3_FAKE_MODE=serve",
		"T3_PORT=3773",
		"LANG=C.UTF-8",
	}
	return w
}

func (w *world) setenv(kv ...string) {
	for _, e := range kv {
		name, _, _ := strings.Cut(e, "=")
		for i, old := range w.env {
			if strings.HasPrefix(old, name+"=") {
				w.env = append(w.env[:i], w.env[i+1:]...)
				break
			}
		}
		w.env = append(w.env, e)
	}
}

// proc is a running supervisor.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
}

// syncBuffer is a bytes.Buffer that the test may read while exec's copying goroutine writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Bytes() []byte { return []byte(s.String()) }

func (w *world) start(args ...string) *proc {
	w.t.Helper()
	return w.startWith(nil, args...)
}

// startWith is start with a last say on the command (another stderr, say) before it starts.
func (w *world) startWith(prepare func(*exec.Cmd), args ...string) *proc {
	w.t.Helper()
	if asRoot {
		// Everything the test wrote is handed to the run user (nobody unless the test made its
		// own), and the supervisor drops to it.
		name := runUser
		if w.user != "" {
			name = w.user
		}
		u, err := user.Lookup(name)
		if err != nil {
			w.t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		filepath.Walk(w.dir, func(p string, _ os.FileInfo, err error) error {
			if err == nil {
				os.Lchown(p, uid, gid)
			}
			return nil
		})
		args = append([]string{"--user", name}, args...)
	}
	exe := supervisorBin
	if w.exe != "" {
		exe = w.exe
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = w.env
	cmd.Dir = w.home
	p := &proc{cmd: cmd, stdout: new(syncBuffer), stderr: new(syncBuffer), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if prepare != nil {
		prepare(cmd)
	}
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	w.procs = append(w.procs, p)
	w.t.Cleanup(func() {
		cmd.Process.Kill()
		// The fakes first: a t3 left behind by a killed supervisor holds its output pipes, and
		// Wait (p.done) waits for them.
		w.killReported()
		<-p.done
	})
	return p
}

// run runs the supervisor to completion and returns its exit code.
func (w *world) run(args ...string) (int, *proc) {
	w.t.Helper()
	p := w.start(args...)
	return p.wait(w.t, 60*time.Second), p
}

func (p *proc) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		t.Fatalf("supervisor still running after %v\nstderr:\n%s", limit, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// reports reads what the fake t3 wrote: its report lines, then notes.
func (w *world) reports() (reps []fakeReport, notes []string) {
	f, err := os.Open(w.out)
	if err != nil {
		return nil, nil
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		var r fakeReport
		if json.Unmarshal(s.Bytes(), &r) == nil && r.Pid != 0 {
			reps = append(reps, r)
		} else {
			notes = append(notes, s.Text())
		}
	}
	return reps, notes
}

// waitStarted waits until the fake t3 reported.
func (w *world) waitStarted(p *proc) fakeReport {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if r, _ := w.reports(); len(r) > 0 {
			return r[0]
		}
		select {
		case <-p.done:
			w.t.Fatalf("supervisor exited %d before t3 started\nstderr:\n%s", p.cmd.ProcessState.ExitCode(), p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	w.t.Fatalf("t3 never started\nstderr:\n%s", p.stderr)
	return fakeReport{}
}

func (w *world) waitNote(prefix string) string {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		_, notes := w.reports()
		for _, n := range notes {
			if strings.HasPrefix(n, prefix) {
				return n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Fatalf("the fake t3 never noted %q", prefix)
	return ""
}

// killReported kills every process the fakes reported, so no test leaks one.
func (w *world) killReported() {
	reps, notes := w.reports()
	for _, r := range reps {
		syscall.Kill(r.Pid, syscall.SIGKILL)
	}
	for _, n := range notes {
		if pid, ok := strings.CutPrefix(n, "agent "); ok {
			if p, err := strconv.Atoi(pid); err == nil {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
		if pid, ok := strings.CutPrefix(n, "grandchild "); ok {
			if p, err := strconv.Atoi(pid); err == nil {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
	}
}

func envOf(r fakeReport) map[string]string {
	m := map[string]string{}
	for _, kv := range r.Env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func processAlive(pid int) bool {
	st, err := procstat.Read(pid)
	return err == nil && st.State != 'Z'
}
