package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type agentProc struct {
	ID    int    `json:"id"`
	PID   int    `json:"pid"`
	Via   string `json:"via"` // "path" or "absolute"
	Alive bool   `json:"alive"`
	Tools []int  `json:"tools"`

	stdin   io.WriteCloser
	replies chan string
}

type t3 struct {
	mu      sync.Mutex
	agents  []*agentProc
	hanging atomic.Bool
	hang    chan struct{}
	ballast [][]byte
}

func server(args []string) int {
	if len(args) == 0 || args[0] != "serve" {
		fmt.Fprintln(os.Stderr, "t3 (stand-in): usage: t3 serve --host H --port P --base-dir D")
		return 2
	}
	fs := flag.NewFlagSet("t3 serve", flag.ContinueOnError)
	host := fs.String("host", "127.0.0.1", "listen address")
	port := fs.String("port", "", "listen port (required)")
	fs.String("base-dir", "", "state directory")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if n, err := strconv.Atoi(*port); err != nil || n < 1 || n > 65535 {
		fmt.Fprintf(os.Stderr, "t3 (stand-in): --port %q is not a port\n", *port)
		return 2
	}
	fmt.Printf("t3-standin: pid=%d argv=%q env_keys=%s %s\n", os.Getpid(), os.Args, envKeys(), tokenNote())

	s := &t3{hang: make(chan struct{})}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for sig := range sigs {
			if sig == syscall.SIGHUP {
				fmt.Println("t3-standin: SIGHUP")
				continue
			}
			os.Exit(0)
		}
	}()
	if d, err := time.ParseDuration(os.Getenv("T3_STANDIN_READY_DELAY")); err == nil {
		time.Sleep(d)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(*host, *port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "t3 (stand-in): %v\n", err)
		return 1
	}
	if n, _ := strconv.Atoi(os.Getenv("T3_STANDIN_AGENTS")); n > 0 {
		abs, _ := strconv.Atoi(os.Getenv("T3_STANDIN_AGENTS_ABS"))
		if _, err := s.spawnAgents(n, abs); err != nil {
			fmt.Fprintf(os.Stderr, "t3 (stand-in): agents: %v\n", err)
		}
	}
	fmt.Printf("t3-standin: listening on %s\n", l.Addr())
	return s.serve(l)
}

func (s *t3) serve(l net.Listener) int {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if s.hanging.Load() {
			s.mu.Lock()
			hang := s.hang
			s.mu.Unlock()
			select { // the livelock: connection accepted, no answer
			case <-hang:
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintln(w, "t3 stand-in")
	})
	mux.HandleFunc("POST /_standin/agents", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		abs, _ := strconv.Atoi(r.URL.Query().Get("abs"))
		agents, err := s.spawnAgents(n, abs)
		reply(w, agents, err)
	})
	mux.HandleFunc("GET /_standin/agents", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, a := range s.agents {
			a.Alive = syscall.Kill(a.PID, 0) == nil
		}
		reply(w, s.agents, nil)
	})
	mux.HandleFunc("POST /_standin/balloon", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		comm := q.Get("comm")
		if comm == "" {
			comm = "rg"
		}
		pid, err := s.command(q.Get("agent"), fmt.Sprintf("tool %s %s %s", comm, orDefault(q.Get("rate"), "64M"), orDefault(q.Get("limit"), "0")))
		reply(w, map[string]int{"pid": pid}, err)
	})
	mux.HandleFunc("POST /_standin/spawn-setsid", func(w http.ResponseWriter, r *http.Request) {
		pid, err := s.command(r.URL.Query().Get("agent"), "setsid")
		reply(w, map[string]int{"pid": pid}, err)
	})
	mux.HandleFunc("POST /_standin/balloon-self", func(w http.ResponseWriter, r *http.Request) {
		rate, err := parseSize(orDefault(r.URL.Query().Get("rate"), "64M"))
		if err == nil {
			go allocate(rate, 0, func(b []byte) { s.mu.Lock(); s.ballast = append(s.ballast, b); s.mu.Unlock() })
		}
		reply(w, map[string]int{"pid": os.Getpid()}, err)
	})
	mux.HandleFunc("POST /_standin/hang", func(w http.ResponseWriter, r *http.Request) {
		s.hanging.Store(true)
		reply(w, "hanging", nil)
	})
	mux.HandleFunc("POST /_standin/unhang", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hanging.Store(false)
		close(s.hang)
		s.hang = make(chan struct{})
		s.mu.Unlock()
		reply(w, "answering", nil)
	})
	mux.HandleFunc("POST /_standin/exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		reply(w, code, nil)
		go func() { time.Sleep(50 * time.Millisecond); os.Exit(code) }()
	})
	err := http.Serve(l, mux)
	fmt.Fprintf(os.Stderr, "t3 (stand-in): %v\n", err)
	return 1
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	json.NewEncoder(w).Encode(v)
}

// spawnAgents starts n agents, abs of them by absolute path.
func (s *t3) spawnAgents(n, abs int) ([]*agentProc, error) {
	var out []*agentProc
	for i := 0; i < n; i++ {
		path, via := "claude", "path"
		if i >= n-abs {
			path, via = os.Getenv("T3_STANDIN_CLAUDE"), "absolute"
			if path == "" {
				return out, fmt.Errorf("abs agents need T3_STANDIN_CLAUDE")
			}
		} else if p, err := exec.LookPath("claude"); err == nil {
			path = p // resolved now, on the PATH of this moment, as Node's spawn does
		} else {
			return out, err
		}
		cmd := exec.Command(path)
		cmd.Args[0] = "claude"
		cmd.Stderr = os.Stderr
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			return out, err
		}
		go cmd.Wait() // reap: a server reaps its own children
		a := &agentProc{PID: cmd.Process.Pid, Via: via, Alive: true, Tools: []int{}, stdin: stdin, replies: make(chan string, 4)}
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				a.replies <- sc.Text()
			}
		}()
		s.mu.Lock()
		a.ID = len(s.agents)
		s.agents = append(s.agents, a)
		s.mu.Unlock()
		out = append(out, a)
	}
	return out, nil
}

// command sends one line to agent id and waits for its "<what> PID" reply.
func (s *t3) command(id, line string) (int, error) {
	n, err := strconv.Atoi(id)
	s.mu.Lock()
	if err != nil || n < 0 || n >= len(s.agents) {
		s.mu.Unlock()
		return 0, fmt.Errorf("no agent %q", id)
	}
	a := s.agents[n]
	s.mu.Unlock()
	if _, err := fmt.Fprintln(a.stdin, line); err != nil {
		return 0, fmt.Errorf("agent %d: %v", n, err)
	}
	select {
	case r := <-a.replies:
		f := strings.Fields(r)
		if len(f) != 2 {
			return 0, fmt.Errorf("agent %d said %q", n, r)
		}
		pid, _ := strconv.Atoi(f[1])
		if strings.HasPrefix(line, "tool") {
			s.mu.Lock()
			a.Tools = append(a.Tools, pid)
			s.mu.Unlock()
		}
		return pid, nil
	case <-time.After(10 * time.Second):
		return 0, fmt.Errorf("agent %d did not answer", n)
	}
}
