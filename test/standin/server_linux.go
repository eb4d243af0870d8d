package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// runServer is `t3 serve`.
func runServer(args []string) int {
	cfg, err := parseServeArgs(args)
	if errors.Is(err, errHelp) {
		fmt.Println(serveUsage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "t3 serve: %v\n%s\n", err, serveUsage)
		return exitStatus(err)
	}
	fmt.Printf("t3-standin: pid=%d ppid=%d argv=%q %s %s\n",
		os.Getpid(), os.Getppid(), os.Args, envReport(os.Environ()), tokenNote(os.Environ()))
	env, err := readServerEnv(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "t3 serve: %v\n", err)
		return exitStatus(err)
	}
	return newServer(cfg, env, os.Stdout, os.Stderr).run()
}

// server is the running `t3 serve`.
type server struct {
	cfg    serveConfig
	env    serverEnv
	out    io.Writer // event lines
	stderr *os.File  // the agents' stderr

	http    *http.Server
	gate    gate
	ballast anonMemory
	exitc   chan int // /exit asks run to return this status

	mu      sync.Mutex
	agents  []*agentProc
	ln      net.Listener
	addr    string
	dropped bool          // the listener was closed on purpose by /drop-listener
	dropFor time.Duration // ... and is reopened after this long (0: never)
}

func newServer(cfg serveConfig, env serverEnv, out io.Writer, stderr *os.File) *server {
	s := &server{cfg: cfg, env: env, out: out, stderr: stderr, exitc: make(chan int, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.handleIndex)
	mux.HandleFunc("GET /_standin/{$}", s.handleStatus)
	mux.HandleFunc("GET /_standin/agents", s.handleListAgents)
	mux.HandleFunc("POST /_standin/agents", s.handleSpawnAgents)
	mux.HandleFunc("POST /_standin/balloon", s.handleBalloon)
	mux.HandleFunc("POST /_standin/balloon-self", s.handleBalloonSelf)
	mux.HandleFunc("POST /_standin/hang", s.handleHang)
	mux.HandleFunc("POST /_standin/unhang", s.handleUnhang)
	mux.HandleFunc("POST /_standin/drop-listener", s.handleDropListener)
	mux.HandleFunc("POST /_standin/spawn-setsid", s.handleSpawnSetsid)
	mux.HandleFunc("POST /_standin/exit", s.handleExit)
	s.http = &http.Server{Handler: mux}
	return s
}

func (s *server) logf(format string, args ...any) {
	fmt.Fprintf(s.out, "t3-standin: "+format+"\n", args...)
}

// run starts the server and returns its exit status. It owns the signals: SIGTERM and SIGINT
// stop it (status 0) without touching the agents, SIGHUP is only logged; with
// T3_STANDIN_SIGHUP=die it has no SIGHUP handler and SIGHUP's default action, so it dies of it
// as Node does, even when started with SIGHUP ignored (defaultDisposition).
func (s *server) run() int {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	if !s.env.SIGHUPDies {
		signal.Notify(sigs, syscall.SIGHUP)
	} else if err := defaultDisposition(syscall.SIGHUP); err != nil {
		fmt.Fprintf(s.stderr, "t3 serve: SIGHUP: %v\n", err)
		return 1
	}
	defer signal.Stop(sigs)

	if s.cfg.BaseDir != "" {
		if err := os.MkdirAll(s.cfg.BaseDir, 0o755); err != nil {
			fmt.Fprintf(s.stderr, "t3 serve: --base-dir: %v\n", err)
			return 1
		}
	}
	if d := s.env.ReadyDelay; d > 0 {
		s.logf("waiting %v before listening (T3_STANDIN_READY_DELAY)", d)
		timer := time.NewTimer(d)
	wait:
		for {
			select {
			case <-timer.C:
				break wait
			case sig := <-sigs:
				if sig == syscall.SIGHUP {
					s.logf("SIGHUP")
					continue
				}
				s.logf("%s before listening: exiting 0", sigName(sig))
				return 0
			}
		}
	}
	ln, err := s.listen()
	if err != nil {
		fmt.Fprintf(s.stderr, "t3 serve: %v\n", err)
		return 1
	}
	errc := make(chan error, 1)
	go s.serveLoop(ln, errc)
	if n := s.env.Agents; n > 0 {
		if _, err := s.spawnAgents(n, s.env.AgentsAbs, nil); err != nil {
			fmt.Fprintf(s.stderr, "t3 serve: T3_STANDIN_AGENTS=%d: %v\n", n, err)
			s.http.Close()
			return 1
		}
	}
	s.logf("listening on http://%s", ln.Addr())
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				s.logf("SIGHUP")
				continue
			}
			s.logf("%s: closing the listener and exiting 0; agents are left to the supervisor", sigName(sig))
			s.http.Close()
			return 0
		case code := <-s.exitc:
			s.logf("exiting %d as asked", code)
			return code
		case err := <-errc:
			fmt.Fprintf(s.stderr, "t3 serve: %v\n", err)
			return 1
		}
	}
}

func sigName(sig os.Signal) string {
	if n, ok := sig.(syscall.Signal); ok {
		if name := unix.SignalName(n); name != "" {
			return name
		}
	}
	return sig.String()
}

// listen opens the configured address and makes it current.
func (s *server) listen() (net.Listener, error) {
	addr := net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	s.mu.Lock()
	s.ln, s.addr, s.dropped = ln, ln.Addr().String(), false
	s.mu.Unlock()
	return ln, nil
}

// serveLoop serves ln, and after /drop-listener closed it, the next listener when it is due. An
// unexpected end of the listener goes to errc.
func (s *server) serveLoop(ln net.Listener, errc chan<- error) {
	for {
		err := s.http.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			return
		}
		s.mu.Lock()
		dropped, d := s.dropped, s.dropFor
		s.mu.Unlock()
		if !dropped {
			errc <- fmt.Errorf("serve: %w", err)
			return
		}
		if d == 0 {
			s.logf("listener dropped for good")
			return
		}
		time.Sleep(d)
		if ln, err = s.listen(); err != nil {
			errc <- err
			return
		}
		s.logf("listening again on http://%s after %v", ln.Addr(), d)
	}
}

// gate holds GET / while the server "hangs".
type gate struct {
	mu      sync.Mutex
	hanging bool
	release chan struct{} // closed by open
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.hanging {
		g.hanging, g.release = true, make(chan struct{})
	}
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.hanging {
		g.hanging = false
		close(g.release)
	}
}

func (g *gate) closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.hanging
}

// pass returns when the gate is open, or false when ctx ends first.
func (g *gate) pass(ctx context.Context) bool {
	g.mu.Lock()
	hanging, release := g.hanging, g.release
	g.mu.Unlock()
	if !hanging {
		return true
	}
	select {
	case <-release:
		return true
	case <-ctx.Done():
		return false
	}
}

const indexPage = "<!doctype html>\n<title>T3 Code (stand-in)</title>\n<p>t3-standin</p>\n"

func (s *server) handleIndex(w http.ResponseWriter, r *http.Request) {
	// Hanging: the connection was accepted and the request read, and no answer comes.
	if !s.gate.pass(r.Context()) {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, indexPage)
}

func (s *server) handleStatus(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	st := map[string]any{"pid": os.Getpid(), "listen": s.addr, "agents": len(s.agents)}
	s.mu.Unlock()
	st["hanging"] = s.gate.closed()
	st["ballast_bytes"] = s.ballast.size()
	reply(w, st, nil)
}

func (s *server) handleListAgents(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	views := make([]agentView, 0, len(s.agents))
	for _, a := range s.agents {
		views = append(views, a.viewLocked())
	}
	s.mu.Unlock()
	reply(w, views, nil)
}

func (s *server) handleSpawnAgents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := intParam(q, "n", 1, 1, maxAgents)
	if err != nil {
		reply(w, nil, err)
		return
	}
	abs, err := intParam(q, "abs", 0, 0, n)
	if err != nil {
		reply(w, nil, err)
		return
	}
	agents, err := s.spawnAgents(n, abs, q["arg"])
	s.mu.Lock()
	views := make([]agentView, 0, len(agents))
	for _, a := range agents {
		views = append(views, a.viewLocked())
	}
	s.mu.Unlock()
	if err != nil {
		err = &httpError{http.StatusInternalServerError, fmt.Sprintf("%v (%d of %d agents spawned)", err, len(agents), n)}
	}
	reply(w, views, err)
}

// rateAndLimit reads a balloon's rate (default 64M, must be positive) and limit (default 0:
// none) from the query.
func rateAndLimit(q url.Values) (rate, limit int64, err error) {
	if rate, err = sizeParam(q, "rate", 64<<20); err == nil && rate == 0 {
		err = badRequest("rate=0: must be positive")
	}
	if err != nil {
		return 0, 0, err
	}
	limit, err = sizeParam(q, "limit", 0)
	return rate, limit, err
}

func (s *server) handleBalloon(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rate, limit, err := rateAndLimit(q)
	if err != nil {
		reply(w, nil, err)
		return
	}
	comm := q.Get("comm")
	if comm == "" {
		comm = "rg"
	}
	if err := checkComm(comm); err != nil {
		reply(w, nil, badRequest(err.Error()))
		return
	}
	a, err := s.agentParam(q)
	if err != nil {
		reply(w, nil, err)
		return
	}
	pid, err := a.command(fmt.Sprintf("tool %s %s %s", comm, formatSize(rate), formatSize(limit)))
	if err != nil {
		reply(w, nil, &httpError{http.StatusInternalServerError, err.Error()})
		return
	}
	t := toolRef{procRef: refOf(pid), comm: comm, rate: rate, limit: limit}
	s.mu.Lock()
	a.tools = append(a.tools, t)
	s.mu.Unlock()
	s.logf("agent %d (pid %d) spawned tool pid=%d comm=%s rate=%s/s limit=%s", a.id, a.pid, pid, comm, formatSize(rate), formatSize(limit))
	reply(w, map[string]any{"pid": pid, "agent": a.id, "comm": comm, "rate": rate, "limit": limit,
		"started_monotonic_usec": monotonicUsec()}, nil)
}

func (s *server) handleBalloonSelf(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rate, limit, err := rateAndLimit(q)
	if err != nil {
		reply(w, nil, err)
		return
	}
	s.logf("the server itself balloons: rate=%s/s limit=%s", formatSize(rate), formatSize(limit))
	started := monotonicUsec()
	go func() {
		total, err := inflate(context.Background(), rate, limit, balloonTick, s.ballast.grow)
		if err != nil {
			s.logf("balloon-self stopped after %s: %v", formatSize(total), err)
		}
	}()
	reply(w, map[string]any{"pid": os.Getpid(), "rate": rate, "limit": limit, "started_monotonic_usec": started}, nil)
}

// monotonicUsec is CLOCK_MONOTONIC in µs, the clock of journald's __MONOTONIC_TIMESTAMP and of the
// prober's --samples: when a balloon started, next to the events and probes of the same boot.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return ts.Nano() / 1000
}

func (s *server) handleHang(w http.ResponseWriter, r *http.Request) {
	s.gate.close()
	s.logf("hanging: GET / will not be answered")
	reply(w, map[string]bool{"hanging": true}, nil)
}

func (s *server) handleUnhang(w http.ResponseWriter, r *http.Request) {
	s.gate.open()
	s.logf("answering GET / again")
	reply(w, map[string]bool{"hanging": false}, nil)
}

func (s *server) handleDropListener(w http.ResponseWriter, r *http.Request) {
	d := time.Duration(0)
	if v := r.URL.Query().Get("for"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d < 0 {
			reply(w, nil, badRequest(fmt.Sprintf("for=%q: want a duration such as 30s", v)))
			return
		}
	}
	s.mu.Lock()
	if s.dropped {
		s.mu.Unlock()
		reply(w, nil, &httpError{http.StatusConflict, "the listener is already dropped"})
		return
	}
	s.dropped, s.dropFor = true, d
	ln, addr := s.ln, s.addr
	s.mu.Unlock()
	again := "never"
	if d > 0 {
		again = d.String()
	}
	s.logf("dropping the listener on %s; listening again after: %s", addr, again)
	reply(w, map[string]string{"dropped": addr, "again_after": again}, nil)
	// Accepted connections, this one included, stay open: only new ones are refused.
	ln.Close()
}

func (s *server) handleSpawnSetsid(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	stubborn, err := boolParam(q, "stubborn")
	if err != nil {
		reply(w, nil, err)
		return
	}
	a, err := s.agentParam(q)
	if err != nil {
		reply(w, nil, err)
		return
	}
	line := "setsid"
	if stubborn {
		line += " stubborn"
	}
	pid, err := a.command(line)
	if err != nil {
		reply(w, nil, &httpError{http.StatusInternalServerError, err.Error()})
		return
	}
	ref := refOf(pid)
	s.mu.Lock()
	a.sleepers = append(a.sleepers, ref)
	s.mu.Unlock()
	s.logf("agent %d (pid %d) spawned a setsid'd sleeper pid=%d stubborn=%t", a.id, a.pid, pid, stubborn)
	reply(w, map[string]any{"pid": pid, "agent": a.id}, nil)
}

func (s *server) handleExit(w http.ResponseWriter, r *http.Request) {
	code, err := intParam(r.URL.Query(), "code", 0, 0, 255)
	if err != nil {
		reply(w, nil, err)
		return
	}
	reply(w, map[string]int{"exiting": code}, nil)
	if f, ok := w.(http.Flusher); ok {
		f.Flush() // the answer is in the socket before the process ends
	}
	select {
	case s.exitc <- code:
	default: // an exit is already under way
	}
}

// httpError is an error with the status it answers with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(msg string) error { return &httpError{http.StatusBadRequest, msg} }

// reply writes v as JSON, or err as {"error": ...} with its status (400 unless it says).
func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		status := http.StatusBadRequest
		var he *httpError
		if errors.As(err, &he) {
			status = he.status
		}
		w.WriteHeader(status)
		v = map[string]string{"error": err.Error()}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badRequest(fmt.Sprintf("%s=%q: want an integer in %d..%d", name, v, lo, hi))
	}
	return n, nil
}

func sizeParam(q url.Values, name string, def int64) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := parseSize(v)
	if err != nil {
		return 0, badRequest(fmt.Sprintf("%s: %v", name, err))
	}
	return n, nil
}

func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest(fmt.Sprintf("%s=%q: want 1 or 0", name, v))
	}
	return b, nil
}

// defaultDisposition sets sig to SIG_DFL, as Node does for every signal at start-up
// (node::PlatformInit: "Restore signal dispositions, the parent process may have changed
// them"). Go instead keeps a SIGHUP that was ignored at exec ignored (os/signal: "If the
// program is started with SIGHUP or SIGINT ignored ... they will remain ignored"), so under
// nohup, or a CI runner that ignores SIGHUP, the die mode would not die. An all-zero struct
// sigaction is SIG_DFL with no flags and an empty mask on every Linux layout.
func defaultDisposition(sig syscall.Signal) error {
	var act [4]uint64
	const sigsetSize = 8 // rt_sigaction(2): sizeof(sigset_t) as the kernel sees it
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig),
		uintptr(unsafe.Pointer(&act)), 0, sigsetSize, 0, 0); e != 0 {
		return fmt.Errorf("rt_sigaction: %w", e)
	}
	return nil
}
