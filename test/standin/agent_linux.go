package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// runAgent is a `claude` session: it idles, and on a line from its server spawns a tool or a
// setsid'd sleeper. Any arguments are accepted, as the SDK passes many.
func runAgent(name string) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s-standin: %v\n", name, err)
		return 1
	}
	a := &agentRuntime{name: name, self: self, log: os.Stderr}
	fmt.Fprintf(a.log, "%s ppid=%d argv0=%s exe=%s PATH=%s cgroup=%s oom_score_adj=%s %s\n",
		a.prefix(), os.Getppid(), quoteIfNeeded(os.Args[0]), quoteIfNeeded(self),
		quoteIfNeeded(os.Getenv("PATH")), selfCgroup(), selfOOMScoreAdj(), tokenNote(os.Environ()))
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if _, err := fmt.Fprintln(os.Stdout, a.handle(sc.Text())); err != nil {
			fmt.Fprintf(a.log, "%s answering: %v\n", a.prefix(), err)
		}
	}
	// The server died or closed our stdin. Real agents spawned through the SDK live on as
	// orphans (anthropics/claude-agent-sdk-typescript#142), which is what a supervisor must
	// clean up; the opt-out is for tests that want the polite kind.
	if os.Getenv("T3_STANDIN_AGENT_EXIT_ON_EOF") == "1" {
		fmt.Fprintf(a.log, "%s stdin closed; exiting (T3_STANDIN_AGENT_EXIT_ON_EOF=1)\n", a.prefix())
		return 0
	}
	fmt.Fprintf(a.log, "%s stdin closed; staying alive until signalled\n", a.prefix())
	sleepForever()
	return 0
}

// agentRuntime is the agent's side of the line protocol (see the package doc).
type agentRuntime struct {
	name string
	self string // this binary, re-executed for tools and sleepers
	log  io.Writer
}

func (a *agentRuntime) prefix() string { return fmt.Sprintf("%s-standin: pid=%d", a.name, os.Getpid()) }

// handle runs one command line and returns the answer line: "ok PID" or "err MESSAGE".
func (a *agentRuntime) handle(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return "err empty command"
	}
	var cmd *exec.Cmd
	what := f[0]
	switch {
	case f[0] == "ping" && len(f) == 1:
		return fmt.Sprintf("ok %d", os.Getpid())
	case f[0] == "tool" && len(f) == 4:
		comm, rate, limit := f[1], f[2], f[3]
		if err := checkComm(comm); err != nil {
			return "err " + err.Error()
		}
		if r, err := parseSize(rate); err != nil || r == 0 {
			return fmt.Sprintf("err rate %q: want a positive size", rate)
		}
		if _, err := parseSize(limit); err != nil {
			return "err limit: " + err.Error()
		}
		// argv[0] is the comm, as when Claude Code runs its bundled rg by re-executing itself.
		cmd = &exec.Cmd{Path: a.self, Args: []string{comm, roleTool, "--comm", comm, "--rate", rate, "--limit", limit}}
		what = "tool comm=" + comm
	case f[0] == "setsid" && (len(f) == 1 || len(f) == 2 && f[1] == "stubborn"):
		cmd = &exec.Cmd{Path: a.self, Args: []string{roleSleeper}, SysProcAttr: &syscall.SysProcAttr{Setsid: true}}
		if len(f) == 2 {
			cmd.Args = append(cmd.Args, "--stubborn")
		}
		what = "sleeper"
	default:
		return fmt.Sprintf("err unknown command %q (want ping, tool COMM RATE LIMIT, setsid [stubborn])", line)
	}
	// Stdout is our answer pipe: children write to our stderr. A setsid'd sleeper keeps that
	// descriptor after we die, as a backgrounded process in a Bash tool call does.
	cmd.Stdout, cmd.Stderr = a.log, a.log
	if err := cmd.Start(); err != nil {
		return "err " + err.Error()
	}
	pid := cmd.Process.Pid
	go func() {
		err := cmd.Wait() // reap, as a parent must; only this goroutine waits for cmd
		fmt.Fprintf(a.log, "%s %s pid=%d exited: %s\n", a.prefix(), what, pid, exitString(cmd.ProcessState, err))
	}()
	return fmt.Sprintf("ok %d", pid)
}

// exitString describes how a waited-for process ended: "exit status 3", "signal: killed".
func exitString(ps *os.ProcessState, err error) string {
	if ps != nil {
		return ps.String()
	}
	if err != nil {
		return err.Error()
	}
	return "unknown"
}
