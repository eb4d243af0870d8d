package supervise

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// Exit codes for a child that never ran, as a shell and tini use them.
const (
	ExitNotExecutable = 126 // found but could not be executed (permission, bad format)
	ExitNotFound      = 127 // not found on PATH or at the given path
)

// Config describes the child.
type Config struct {
	// Path is the program, absolute or looked up on the PATH found in Env (not the supervisor's
	// own PATH: the child is what runs it).
	Path string
	// Args are the arguments after argv[0]; argv[0] is Path as given.
	Args []string
	// Env is the child's whole environment. It is never nil-inherited: a nil Env gives the child
	// an empty environment (see BuildEnv).
	Env []string
	// Dir is the working directory; "" keeps the supervisor's.
	Dir string
	// Stdout and Stderr receive the child's output; nil discards it. Pass *os.File (the
	// supervisor's own stderr is the journal stream under systemd) so no copying goroutine sits
	// between the child and journald.
	Stdout, Stderr *os.File
	// Cgroup, when not nil, is an open directory of a cgroup v2 leaf: the child is created
	// directly inside it (clone3(2) CLONE_INTO_CGROUP through SysProcAttr.UseCgroupFD), so not a
	// single page it allocates is charged anywhere else.
	Cgroup *os.File
	// Tree kills everything the child spawned, the child included. Nil means the process tree
	// below the supervisor (see KillTree), which needs SetSubreaper to catch orphans.
	Tree Killer
}

// Killer ends a whole workload at once.
type Killer interface {
	KillAll() error
}

// Exit is how the child ended.
type Exit struct {
	Code   int            // exit code when it exited normally
	Signal syscall.Signal // the signal that killed it, or 0
}

// Status is the supervisor's own exit code for this child's end: the child's code, or 128+n
// when signal n killed it, as a shell reports it (and tini passes it on).
func (e Exit) Status() int {
	if e.Signal != 0 {
		return 128 + int(e.Signal)
	}
	return e.Code
}

func (e Exit) String() string {
	if e.Signal != 0 {
		return fmt.Sprintf("killed by signal %d (%s)", int(e.Signal), e.Signal)
	}
	return fmt.Sprintf("exited with code %d", e.Code)
}

// StartError is a child that could not be started; Code is the exit code that says why.
type StartError struct {
	Path string
	Code int
	Err  error
}

func (e *StartError) Error() string { return fmt.Sprintf("start %s: %v", e.Path, e.Err) }
func (e *StartError) Unwrap() error { return e.Err }

// Child is a started child process.
type Child struct {
	cmd  *exec.Cmd
	tree Killer
	done chan struct{}
	exit Exit
}

// Start starts the child described by cfg.
func Start(cfg Config) (*Child, error) {
	path, err := LookPath(cfg.Path, cfg.Env)
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   append([]string{cfg.Path}, cfg.Args...),
		Env:    cfg.Env,
		Dir:    cfg.Dir,
		Stdout: cfg.Stdout,
		Stderr: cfg.Stderr,
	}
	if cmd.Env == nil {
		cmd.Env = []string{} // exec.Cmd would inherit everything on nil
	}
	cmd.SysProcAttr = sysProcAttr(cfg.Cgroup)
	c := &Child{cmd: cmd, tree: cfg.Tree, done: make(chan struct{})}
	if c.tree == nil {
		c.tree = treeKiller{root: os.Getpid()}
	}
	started := make(chan error, 1)
	go c.run(started)
	if err := <-started; err != nil {
		code := ExitNotExecutable
		if errors.Is(err, fs.ErrNotExist) {
			code = ExitNotFound
		}
		return nil, &StartError{Path: path, Code: code, Err: err}
	}
	return c, nil
}

// LookPath finds file on the PATH of env (the child's PATH decides what `t3` means), and
// reports a failure as a *StartError with the exit code a shell would use (126 or 127).
func LookPath(file string, env []string) (string, error) {
	if file == "" {
		return "", &StartError{Code: ExitNotFound, Err: errors.New("no program given")}
	}
	path, err := lookPathIn(file, env)
	if err != nil {
		code := ExitNotFound
		if errors.Is(err, fs.ErrPermission) {
			code = ExitNotExecutable
		}
		return "", &StartError{Path: file, Code: code, Err: err}
	}
	return path, nil
}

// run starts the child and is the only caller of Wait (consul-template #1372). It forks and
// waits on one OS thread, locked to it: the child's parent-death signal is tied to the thread
// that forked it, not to the process (prctl(2) PR_SET_PDEATHSIG, golang/go#27505), and a Go
// thread can end under a live child (the runtime terminates a thread whose locked goroutine
// returns, which a caller of Start may have done). Locked here, the thread lives exactly as
// long as it waits for the child.
func (c *Child) run(started chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := c.cmd.Start(); err != nil {
		started <- err
		return
	}
	started <- nil
	err := c.cmd.Wait()
	c.exit = exitOf(c.cmd.ProcessState, err)
	close(c.done)
}

func exitOf(ps *os.ProcessState, err error) Exit {
	if ps == nil {
		return Exit{Code: 1}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return Exit{Signal: ws.Signal()}
	}
	return Exit{Code: ps.ExitCode()}
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Done is closed when the child has exited; Exit is valid from then on.
func (c *Child) Done() <-chan struct{} { return c.done }

// Exit is how the child ended. It must only be read after Done is closed.
func (c *Child) Exit() Exit { return c.exit }

// Signal sends sig to the child alone (not to what it spawned). A child that already exited is
// not an error.
func (c *Child) Signal(sig os.Signal) error {
	err := c.cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// StopReport says how a stop went.
type StopReport struct {
	Exit      Exit
	Escalated bool          // the grace period ran out and everything was killed
	Took      time.Duration // from the first signal to the child's exit
	KillErr   error         // the workload kill failed (processes may remain)
}

// Stop ends the child and everything it spawned: SIGTERM to the child, up to grace for it to
// exit, then SIGKILL to the whole workload. Once the child has exited, whatever it left behind
// (agents, setsid'd tools) is killed too: a dead server's agents must not outlive it.
func (c *Child) Stop(grace time.Duration) StopReport {
	start := time.Now()
	var r StopReport
	select {
	case <-c.done:
	default:
		_ = c.Signal(syscall.SIGTERM)
		t := time.NewTimer(grace)
		select {
		case <-c.done:
			t.Stop()
		case <-t.C:
			r.Escalated = true
			r.KillErr = c.tree.KillAll()
			_ = c.Signal(syscall.SIGKILL)
			<-c.done
		}
	}
	r.Took = time.Since(start)
	if err := c.tree.KillAll(); err != nil && r.KillErr == nil {
		r.KillErr = err
	}
	r.Exit = c.exit
	return r
}

// Cleanup kills whatever the child left behind after it exited on its own.
func (c *Child) Cleanup() error {
	<-c.done
	return c.tree.KillAll()
}
