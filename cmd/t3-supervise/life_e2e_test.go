//go:build linux

package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"t3-supervise/internal/testenv"
	"t3-supervise/internal/vaulttest"
	"t3-supervise/supervise"
)

// The lifecycle promises, tested against a real Node process as t3: test/node/t3-serve.mjs
// behaves as T3's bin.ts under Effect does (exit 0 on SIGTERM/SIGINT, no SIGHUP handler).

// newNodeWorld is a vault world whose t3 is the real Node server.
func newNodeWorld(t *testing.T) *vaultWorld {
	t.Helper()
	node := testenv.NeedNode(t)
	w := newVaultWorld(t)
	script := filepath.Join(w.dir, "t3-serve.mjs")
	if err := copyFile("../../test/node/t3-serve.mjs", script); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(w.bin, "t3")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(script, link); err != nil {
		t.Fatal(err)
	}
	w.setenv("PATH=" + w.bin + ":" + filepath.Dir(node) + ":/usr/bin:/bin")
	return w
}

// nodeServer is a supervisor running the Node server.
type nodeServer struct {
	p          *proc
	pid        int // the Node server's
	host, port string
}

// serveNode starts the supervisor (prepare may change its command) with `t3 serve --port P
// [--host host]` and waits for server_ready.
func (w *vaultWorld) serveNode(prepare func(*exec.Cmd), host string, extra ...string) nodeServer {
	w.t.Helper()
	n := nodeServer{host: host, port: freePort(w.t)}
	args := append([]string{"--no-cgroup"}, extra...)
	args = append(args, "--", "serve", "--port", n.port)
	if host != "" {
		args = append(args, "--host", host)
	}
	n.p = w.startWith(prepare, args...)
	if !waitFor(func() bool { return eventLine(n.p.stderr.String(), "server_ready") != "" || n.p.exited() }, 30*time.Second) || n.p.exited() {
		w.t.Fatalf("no server_ready (exit %d)\nstderr:\n%s", n.p.exitCode(), n.p.stderr)
	}
	n.pid = atoiOr0(eventField(n.p.stderr.String(), "child_started", "T3_PID"))
	if n.pid == 0 || !processAlive(n.pid) {
		w.t.Fatalf("no live t3 pid in child_started\n%s", n.p.stderr)
	}
	w.t.Cleanup(func() { syscall.Kill(n.pid, syscall.SIGKILL) })
	return n
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) exitCode() int {
	if !p.exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// answers reports whether the Node server answers GET /.
func (n nodeServer) answers() bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(probeHostOf(n.host), n.port) + "/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

func probeHostOf(host string) string {
	if host == "" || host == "0.0.0.0" {
		return "127.0.0.1"
	}
	return host
}

// gone waits until the Node server is dead and its port free again.
func (n nodeServer) gone(t *testing.T, limit time.Duration) {
	t.Helper()
	free := func() bool {
		l, err := net.Listen("tcp", net.JoinHostPort(probeHostOf(n.host), n.port))
		if err != nil {
			return false
		}
		l.Close()
		return true
	}
	start := time.Now()
	if !waitFor(func() bool { return !processAlive(n.pid) && free() }, limit) {
		t.Fatalf("t3 (pid %d, alive %v) or its port %s outlived the supervisor by %v", n.pid, processAlive(n.pid), n.port, limit)
	}
	t.Logf("t3 gone and port %s free %v after the supervisor", n.port, time.Since(start).Round(time.Millisecond))
}

// eventField is the value of field in the first event of kind on a supervisor's stderr.
func eventField(out, kind, field string) string {
	m := regexp.MustCompile(`[ (]` + field + `=(\S+?)[ )]`).FindStringSubmatch(eventLine(out, kind))
	if m == nil {
		return ""
	}
	return m[1]
}

// restartPrevented is the unit's RestartPreventExitStatus= list.
func restartPrevented(t *testing.T) map[int]bool {
	t.Helper()
	b, err := os.ReadFile("../../units/t3-supervise@.service")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^RestartPreventExitStatus=(.*)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("the unit has no RestartPreventExitStatus=")
	}
	codes := map[int]bool{}
	for _, f := range strings.Fields(string(m[1])) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("RestartPreventExitStatus= %q: only numbers expected", f)
		}
		codes[n] = true
	}
	if !regexp.MustCompile(`(?m)^Restart=always$`).Match(b) {
		t.Error("the unit does not say Restart=always: on-failure takes an exit 0 for a clean stop")
	}
	return codes
}

// An end of t3 the supervisor did not ask for is a crash for systemd to recover from: whatever
// t3's own code or signal, the supervisor's exit is neither 0 nor one that the unit's
// RestartPreventExitStatus= keeps down; t3's real code stays in child_exited.
func TestUnaskedExitAlwaysRestarts(t *testing.T) {
	prevented := restartPrevented(t)
	check := func(e supervise.Exit) {
		if got := exitStatusFor(e, false); got == exitOK || prevented[got] {
			t.Errorf("t3 %v unasked: supervisor exit %d, which systemd does not restart", e, got)
		}
	}
	for code := 0; code <= 255; code++ {
		check(supervise.Exit{Code: code})
	}
	for sig := 1; sig <= 64; sig++ {
		check(supervise.Exit{Signal: syscall.Signal(sig)})
	}
	// A requested stop stays clean, and t3's own 64-78 never reads as one of ours.
	for _, tc := range []struct {
		code int
		sig  syscall.Signal
		want int
	}{{0, 0, 0}, {0, syscall.SIGTERM, 0}, {0, syscall.SIGKILL, 0}, {1, 0, 1}, {77, 0, exitT3Exited}, {0, syscall.SIGABRT, 134}} {
		if got := exitStatusFor(supervise.Exit{Code: tc.code, Signal: tc.sig}, true); got != tc.want {
			t.Errorf("requested stop, t3 exit %d signal %v: %d, want %d", tc.code, tc.sig, got, tc.want)
		}
	}
}

// The real binary and a real Node server: a SIGTERM from outside (earlyoom's) makes T3 exit 0;
// the supervisor exits 74 for systemd to restart it, and says what t3 really did. A SIGKILL
// from outside is 137.
func TestNodeKilledFromOutsideIsRestartWorthy(t *testing.T) {
	parallel(t)
	prevented := restartPrevented(t)
	for _, tc := range []struct {
		sig        syscall.Signal
		code       int
		childField string
	}{
		{syscall.SIGTERM, exitT3Exited, "T3_EXIT_CODE=0"},
		{syscall.SIGKILL, 137, "T3_SIGNAL=SIGKILL"},
	} {
		w := newNodeWorld(t)
		n := w.serveNode(nil, "127.0.0.1")
		if err := syscall.Kill(n.pid, tc.sig); err != nil {
			t.Fatal(err)
		}
		code := n.p.wait(t, 30*time.Second)
		line := eventLine(n.p.stderr.String(), "child_exited")
		if code != tc.code || code == 0 || prevented[code] {
			t.Errorf("t3 got %v from outside: supervisor exit %d, want %d\n%s", tc.sig, code, tc.code, n.p.stderr)
		}
		if !strings.Contains(line, tc.childField) || !strings.Contains(line, fmt.Sprintf("T3_SUPERVISOR_EXIT_STATUS=%d", tc.code)) {
			t.Errorf("child_exited does not say what t3 did (%s) and what follows: %s", tc.childField, line)
		}
		t.Logf("%v to t3 (Node): %s", tc.sig, strings.TrimPrefix(line, "t3-supervise: "))
	}
}

// SIGHUP re-reads the token and never reaches t3: a Node server has no SIGHUP handler, and its
// default is to die (129), taking every agent with it.
func TestSIGHUPReReadsWithoutKillingNode(t *testing.T) {
	parallel(t)
	w := newNodeWorld(t)
	n := w.serveNode(nil, "127.0.0.1", "--refresh-interval", "0")
	newTok := vaulttest.FakeToken()
	w.v.Put("workstation/claude-users/"+w.user, map[string]any{"setup_token": newTok})
	for i := 0; i < 3; i++ {
		n.p.cmd.Process.Signal(syscall.SIGHUP)
	}
	if !waitFor(func() bool { return strings.Contains(n.p.stderr.String(), "credential_rotated") || n.p.exited() }, 20*time.Second) ||
		n.p.exited() {
		t.Fatalf("no re-read after SIGHUP (exit %d)\n%s", n.p.exitCode(), n.p.stderr)
	}
	if !processAlive(n.pid) || !n.answers() {
		t.Fatalf("the Node server (pid %d) did not survive SIGHUP to the supervisor\n%s", n.pid, n.p.stderr)
	}
	if b, _ := os.ReadFile(w.envFile()); string(b) != "CLAUDE_CODE_OAUTH_TOKEN="+newTok+"\n" {
		t.Error("the re-read did not reach the env file")
	}
	if code := w.stop(n.p); code != 0 {
		t.Errorf("exit %d after a requested stop", code)
	}
	w.scanForToken(newTok)
}

// The probe dials where t3 listens: a healthy server on 127.0.0.2 or ::1 alone (nothing on
// 127.0.0.1) must become ready, not be killed with 75 at --ready-timeout.
func TestProbeDialsWhereT3Listens(t *testing.T) {
	parallel(t)
	for host, want := range map[string]string{"127.0.0.2": "http://127.0.0.2:", "::1": "http://[::1]:", "0.0.0.0": "http://127.0.0.1:"} {
		t.Run(host, func(t *testing.T) {
			w := newNodeWorld(t)
			n := w.serveNode(nil, host, "--ready-timeout", "5s", "--probe-interval", "1s")
			url := eventField(n.p.stderr.String(), "server_ready", "T3_PROBE_URL")
			if !strings.HasPrefix(url, want+n.port+"/") {
				t.Errorf("--host %s: probed %q, want %s%s/", host, url, want, n.port)
			}
			t.Logf("--host %s: probed %s", host, url)
			if code := w.stop(n.p); code != 0 {
				t.Errorf("exit %d", code)
			}
		})
	}
	// t3's own variable for the address, when the arguments carry no --host.
	w := newNodeWorld(t)
	w.setenv("T3CODE_HOST=127.0.0.2")
	n := w.serveNode(nil, "", "--ready-timeout", "5s")
	if url := eventField(n.p.stderr.String(), "server_ready", "T3_PROBE_URL"); !strings.HasPrefix(url, "http://127.0.0.2:") {
		t.Errorf("T3CODE_HOST=127.0.0.2: probed %q", url)
	}
	w.stop(n.p)
}

// notifySocket is a real unixgram NOTIFY_SOCKET, as systemd's (and go-systemd's own tests) have.
func notifySocket(t *testing.T, w *world) *net.UnixConn {
	t.Helper()
	path := filepath.Join(w.dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	os.Chmod(path, 0o777) // the supervisor may have dropped to nobody
	w.setenv("NOTIFY_SOCKET="+path, "WATCHDOG_USEC=2000000")
	return conn
}

// readNotify returns the next datagram, or "" after limit.
func readNotify(conn *net.UnixConn, limit time.Duration) string {
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(limit))
	n, err := conn.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// With WatchdogSec= and no port, nothing could feed the watchdog and systemd would kill a
// healthy unit every WatchdogSec: refused before anything starts. With a port, READY=1 and
// WATCHDOG=1 follow the probes.
func TestWatchdogNeedsAPortToProbe(t *testing.T) {
	parallel(t)
	w := newVaultWorld(t)
	conn := notifySocket(t, w.world)
	w.setenv("T3_PORT=")
	code, p := w.run("--no-cgroup", "--", "serve")
	if code != exitConfig || !strings.Contains(p.stderr.String(), "WatchdogSec=") {
		t.Errorf("exit %d, want %d naming WatchdogSec=\n%s", code, exitConfig, p.stderr)
	}
	if got := readNotify(conn, 100*time.Millisecond); got != "" {
		t.Errorf("the refused run told systemd %q", got)
	}
	w.assertNothingStarted()

	w = newNodeWorld(t)
	conn = notifySocket(t, w.world)
	n := w.serveNode(nil, "127.0.0.1")
	var got []string
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(strings.Join(got, "|"), "WATCHDOG=1") && time.Now().Before(deadline) {
		if m := readNotify(conn, time.Second); strings.HasPrefix(m, "READY=1") || strings.HasPrefix(m, "WATCHDOG=1") {
			got = append(got, m)
		}
	}
	all := strings.Join(got, "|")
	if !strings.HasPrefix(all, "READY=1") || !strings.Contains(all, "WATCHDOG=1") {
		t.Errorf("notifications with a port: %q", got)
	}
	w.stop(n.p)
	// The stop was announced: everything it sent is queued on the socket by now.
	var last string
	for m := readNotify(conn, time.Second); m != ""; m = readNotify(conn, 100*time.Millisecond) {
		last = m
	}
	if last != "STOPPING=1" {
		t.Errorf("last notification before the supervisor exited: %q, want STOPPING=1", last)
	}
}

// A supervisor that dies must not leave t3 behind, and must not die of a closed log pipe.
func TestSupervisorEndNeverOrphansT3(t *testing.T) {
	parallel(t)
	t.Run("stderr a closed pipe", func(t *testing.T) {
		w := newNodeWorld(t)
		r, wr, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 64)
		go func() {
			defer close(lines)
			s := bufio.NewScanner(r)
			for s.Scan() {
				if lines <- s.Text(); strings.Contains(s.Text(), " server_ready: ") {
					r.Close() // the reader goes away: every later event hits a closed pipe
					return
				}
			}
		}()
		n := nodeServer{host: "127.0.0.1", port: freePort(t)}
		p := w.startWith(func(cmd *exec.Cmd) { cmd.Stderr = wr }, "--no-cgroup", "--refresh-interval", "0",
			"--", "serve", "--host", n.host, "--port", n.port)
		wr.Close()
		var out []string
		for l := range lines {
			out = append(out, l)
			if strings.Contains(l, " server_ready: ") {
				break
			}
		}
		n.p, n.pid = p, atoiOr0(eventField(strings.Join(out, "\n"), "child_started", "T3_PID"))
		if n.pid == 0 {
			t.Fatalf("no child_started before server_ready:\n%s", strings.Join(out, "\n"))
		}
		t.Cleanup(func() { syscall.Kill(n.pid, syscall.SIGKILL) })
		// A re-read writes its events to the closed pipe; its effect on the env file shows that
		// the supervisor went on past them.
		newTok := vaulttest.FakeToken()
		w.v.Put("workstation/claude-users/"+w.user, map[string]any{"setup_token": newTok})
		p.cmd.Process.Signal(syscall.SIGHUP)
		if !waitFor(func() bool {
			b, _ := os.ReadFile(w.envFile())
			return string(b) == "CLAUDE_CODE_OAUTH_TOKEN="+newTok+"\n" || p.exited()
		}, 20*time.Second) || p.exited() {
			t.Fatalf("the supervisor did not outlive writes to a closed stderr: %v", p.cmd.ProcessState)
		}
		if !n.answers() {
			t.Error("t3 stopped answering")
		}
		if code := w.stop(p); code != 0 {
			t.Errorf("exit %d after SIGTERM", code)
		}
		n.gone(t, 5*time.Second)
		w.scanForToken(newTok)
	})
	t.Run("SIGQUIT", func(t *testing.T) {
		w := newNodeWorld(t)
		n := w.serveNode(nil, "127.0.0.1")
		n.p.cmd.Process.Signal(syscall.SIGQUIT)
		if code := n.p.wait(t, 30*time.Second); code != 0 {
			t.Errorf("exit %d after SIGQUIT, want 0 (a stop)\n%s", code, n.p.stderr)
		}
		if !strings.Contains(eventLine(n.p.stderr.String(), "stopping"), "T3_SIGNAL=SIGQUIT") {
			t.Errorf("SIGQUIT did not stop t3 through the stop path\n%s", n.p.stderr)
		}
		n.gone(t, 5*time.Second)
	})
	t.Run("SIGKILL of the supervisor", func(t *testing.T) {
		w := newNodeWorld(t)
		n := w.serveNode(nil, "127.0.0.1")
		n.p.cmd.Process.Kill()
		n.gone(t, 5*time.Second) // before waiting: a surviving t3 holds the supervisor's output pipes open
		<-n.p.done
	})
}
