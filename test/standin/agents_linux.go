package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// How an agent was spawned.
const (
	viaPath     = "path"     // `claude` looked up on PATH at spawn time
	viaAbsolute = "absolute" // the absolute path in T3_STANDIN_CLAUDE
)

// agentTimeout bounds one command to an agent: a spawn takes milliseconds.
const agentTimeout = 10 * time.Second

// agentProc is the server's handle on one agent: a child with pipes on stdin and stdout.
type agentProc struct {
	id   int
	pid  int
	via  string
	path string
	args []string // after argv[0]; set for a real agent CLI, which takes no commands

	stdin *os.File      // commands; closed when the agent has exited
	lines <-chan string // answers; closed at EOF of the agent's stdout
	cmdMu sync.Mutex    // one command at a time, so answers pair with their commands

	// Guarded by server.mu.
	exited   bool
	exit     string
	tools    []toolRef
	sleepers []procRef
}

// toolRef is a tool an agent spawned on request.
type toolRef struct {
	procRef
	comm        string
	rate, limit int64
}

// agentView is an agent as GET /_standin/agents shows it.
type agentView struct {
	ID       int        `json:"id"`
	PID      int        `json:"pid"`
	Via      string     `json:"via"`
	Path     string     `json:"path"`
	Args     []string   `json:"args,omitempty"`
	Alive    bool       `json:"alive"`
	Exit     string     `json:"exit,omitempty"`
	Tools    []procView `json:"tools"`
	Sleepers []procView `json:"sleepers"`
}

// procView is a tool or a sleeper in an agentView.
type procView struct {
	PID   int    `json:"pid"`
	Comm  string `json:"comm,omitempty"`
	Rate  int64  `json:"rate,omitempty"`
	Limit *int64 `json:"limit,omitempty"`
	Alive bool   `json:"alive"`
}

// viewLocked describes a; the caller holds server.mu.
func (a *agentProc) viewLocked() agentView {
	v := agentView{ID: a.id, PID: a.pid, Via: a.via, Path: a.path, Args: a.args, Alive: !a.exited, Exit: a.exit,
		Tools: []procView{}, Sleepers: []procView{}}
	for _, t := range a.tools {
		limit := t.limit
		v.Tools = append(v.Tools, procView{PID: t.PID, Comm: t.comm, Rate: t.rate, Limit: &limit, Alive: t.alive()})
	}
	for _, p := range a.sleepers {
		v.Sleepers = append(v.Sleepers, procView{PID: p.PID, Alive: p.alive()})
	}
	return v
}

// spawnAgents starts n agents, the last abs of them by absolute path, each with the arguments
// args after argv[0], and returns those started (all of them, unless err says why not).
func (s *server) spawnAgents(n, abs int, args []string) ([]*agentProc, error) {
	var out []*agentProc
	for i := 0; i < n; i++ {
		via := viaPath
		if i >= n-abs {
			via = viaAbsolute
		}
		a, err := s.spawnAgent(via, args)
		if err != nil {
			return out, err
		}
		out = append(out, a)
	}
	return out, nil
}

// spawnAgent starts one agent as Node's child_process.spawn would: the server's whole
// environment, its process group, pipes for stdin and stdout, stderr shared with the server.
//
// With args it is a real agent CLI run for one turn (`claude -p PROMPT --allowedTools Bash`),
// not this stand-in: it gets no commands, its stdin is at EOF from the start (`claude -p` reads
// a stdin that is not a terminal as more prompt; on an open pipe 2.1.328 waits 3 s for data,
// then warns "no stdin data received in 3s" and proceeds) and its stdout, the turn's answer,
// goes where its stderr goes, the server's stderr.
func (s *server) spawnAgent(via string, args []string) (*agentProc, error) {
	var path, argv0 string
	switch via {
	case viaPath:
		// Looked up now, on the PATH of this moment: a supervisor's shim directory comes first.
		p, err := exec.LookPath("claude")
		if err != nil {
			return nil, fmt.Errorf("spawn claude: %w", err)
		}
		path, argv0 = p, "claude"
	case viaAbsolute:
		if s.env.ClaudeAbs == "" {
			return nil, errors.New("spawn by absolute path: T3_STANDIN_CLAUDE is not set")
		}
		path, argv0 = s.env.ClaudeAbs, s.env.ClaudeAbs
	}
	if len(args) > 0 {
		return s.startAgent(&exec.Cmd{Path: path, Args: append([]string{argv0}, args...), Stdout: s.stderr, Stderr: s.stderr},
			&agentProc{via: via, path: path, args: args})
	}
	// Our own pipes rather than cmd.StdoutPipe: the reader below may outlive Wait, which would
	// close a StdoutPipe under it.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd := &exec.Cmd{Path: path, Args: []string{argv0}, Stdin: inR, Stdout: outW, Stderr: s.stderr}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("spawn %s: %w", path, err)
	}
	lines := make(chan string, 4)
	go func() {
		defer close(lines)
		defer outR.Close()
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return s.track(cmd, &agentProc{via: via, path: path, stdin: inW, lines: lines}), nil
}

// startAgent starts a real agent CLI (see spawnAgent): no pipes, and no commands, so stdin is
// nil and lines is closed at once.
func (s *server) startAgent(cmd *exec.Cmd, a *agentProc) (*agentProc, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("spawn %s: %w", cmd.Path, err)
	}
	lines := make(chan string)
	close(lines)
	a.lines = lines
	return s.track(cmd, a), nil
}

// track records a started agent and reaps it.
func (s *server) track(cmd *exec.Cmd, a *agentProc) *agentProc {
	a.pid = cmd.Process.Pid
	s.mu.Lock()
	a.id = len(s.agents)
	s.agents = append(s.agents, a)
	s.mu.Unlock()
	s.logf("agent %d spawned: pid=%d via=%s path=%s args=%q", a.id, a.pid, a.via, a.path, a.args)
	go func() {
		err := cmd.Wait() // the only Wait on this agent; a server reaps its children
		exit := exitString(cmd.ProcessState, err)
		s.mu.Lock()
		a.exited, a.exit = true, exit
		s.mu.Unlock()
		if a.stdin != nil {
			a.stdin.Close()
		}
		s.logf("agent %d (pid %d) exited: %s", a.id, a.pid, exit)
	}()
	return a
}

// agentParam finds the agent named by ?agent=ID, or without it the first live one.
func (s *server) agentParam(q url.Values) (*agentProc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := q.Get("agent")
	if v == "" {
		for _, a := range s.agents {
			if !a.exited {
				return a, nil
			}
		}
		return nil, &httpError{http.StatusConflict, "no live agent: spawn one with POST /_standin/agents"}
	}
	id, err := strconv.Atoi(v)
	if err != nil || id < 0 || id >= len(s.agents) {
		return nil, &httpError{http.StatusNotFound, fmt.Sprintf("agent=%q: no such agent (%d spawned)", v, len(s.agents))}
	}
	a := s.agents[id]
	if a.exited {
		return nil, &httpError{http.StatusConflict, fmt.Sprintf("agent %d (pid %d) has exited: %s", id, a.pid, a.exit)}
	}
	return a, nil
}

// command sends one line to the agent and returns the pid in its "ok PID" answer.
func (a *agentProc) command(line string) (int, error) {
	if a.stdin == nil {
		return 0, fmt.Errorf("agent %d (pid %d) runs %s %q: a real agent takes no commands", a.id, a.pid, a.path, a.args)
	}
	a.cmdMu.Lock()
	defer a.cmdMu.Unlock()
	// An answer that came after an earlier command timed out belongs to nobody.
drain:
	for {
		select {
		case _, ok := <-a.lines:
			if !ok {
				return 0, fmt.Errorf("agent %d (pid %d) closed its stdout", a.id, a.pid)
			}
		default:
			break drain
		}
	}
	if _, err := io.WriteString(a.stdin, line+"\n"); err != nil {
		return 0, fmt.Errorf("agent %d (pid %d): send %q: %w", a.id, a.pid, line, err)
	}
	timer := time.NewTimer(agentTimeout)
	defer timer.Stop()
	select {
	case answer, ok := <-a.lines:
		if !ok {
			return 0, fmt.Errorf("agent %d (pid %d) closed its stdout before answering %q", a.id, a.pid, line)
		}
		return parseAnswer(answer)
	case <-timer.C:
		return 0, fmt.Errorf("agent %d (pid %d) did not answer %q within %v", a.id, a.pid, line, agentTimeout)
	}
}

// parseAnswer reads an agent's answer line: "ok PID" or "err MESSAGE".
func parseAnswer(answer string) (int, error) {
	word, rest, _ := strings.Cut(answer, " ")
	switch word {
	case "ok":
		pid, err := strconv.Atoi(rest)
		if err != nil || pid <= 0 {
			return 0, fmt.Errorf("agent answered %q: not a pid", answer)
		}
		return pid, nil
	case "err":
		return 0, fmt.Errorf("agent: %s", rest)
	}
	return 0, fmt.Errorf("agent answered %q: want ok PID or err MESSAGE", answer)
}
