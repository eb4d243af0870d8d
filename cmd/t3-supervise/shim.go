//go:build linux

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"t3-supervise/cgroup"
	"t3-supervise/supervise"
)

// shimAdjVar carries the agents' oom_score_adj from the supervisor to its shims, through t3's
// environment (T3_* is allowlisted; t3 passes its environment to the agents it spawns).
const shimAdjVar = "T3_SUPERVISE_AGENT_OOM_SCORE_ADJ"

// shimDirVar names the supervisor's shim directory in t3's environment, the same way. It is what
// makes the binary a shim: without it the binary is t3-supervise under whatever name it was
// installed or renamed to.
const shimDirVar = "T3_SUPERVISE_SHIM_DIR"

// shimPIDVar is set by a shim, to its own pid, just before it execs the agent. A shim that finds
// its own pid there was exec'd by itself: the program it found on PATH is a shim again.
const shimPIDVar = "T3_SUPERVISE_SHIM_PID"

// isShim reports whether this process is one of the supervisor's shims: the supervisor said
// where its shims are (shimDirVar), and the name it was invoked under is a symlink there to this
// very binary. A name alone decided before, so a binary renamed or installed as anything but
// t3-supervise* became a shim, and two such copies on PATH exec'd each other for ever.
func isShim(argv0 string, environ []string, self string) bool {
	dir, ok := supervise.Lookup(environ, shimDirVar)
	base := filepath.Base(argv0)
	if !ok || dir == "" || !filepath.IsAbs(dir) || base == "" || base == "." || base == "/" {
		return false
	}
	link := filepath.Join(dir, base)
	if st, err := os.Lstat(link); err != nil || st.Mode()&fs.ModeSymlink == 0 {
		return false
	}
	return sameFile(link, self)
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// shim runs as `claude` (or another agent name) when t3 spawns an agent from PATH: it moves
// itself into its own agent cgroup leaf with a raised oom_score_adj, then execs the real program
// of that name found on the rest of PATH. A failure to place itself never keeps the agent from
// starting: it says so on stderr (t3 logs its agents' stderr) and runs the agent anyway.
func shim(argv []string, environ []string) int {
	name := filepath.Base(argv[0])
	if v, ok := supervise.Lookup(environ, shimPIDVar); ok && v == strconv.Itoa(os.Getpid()) {
		fmt.Fprintf(os.Stderr, "%s shim: %s: exec'd the shim again (the %s found on PATH is a t3-supervise shim too): refusing to loop\n", identifier, name, name)
		return exitNotExecutable
	}
	adj := defaultAgentOOMAdj
	if v, ok := supervise.Lookup(environ, shimAdjVar); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= -1000 && n <= 1000 {
			adj = n
		}
	}
	if f, err := os.Open("/proc/self/cgroup"); err == nil {
		if _, err := cgroup.EnterAgentLeaf(f, "", adj); err != nil {
			fmt.Fprintf(os.Stderr, "%s shim: %s: not placed in an agent cgroup, running it anyway: %v\n", identifier, name, err)
		}
		f.Close()
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s shim: %s: %v\n", identifier, name, err)
		return exitInternal
	}
	real, err := supervise.LookPathSkipping(name, environ, self)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s shim: %v\n", identifier, err)
		return exitNotFound
	}
	env := append(without(environ, shimPIDVar), shimPIDVar+"="+strconv.Itoa(os.Getpid()))
	err = syscall.Exec(real, argv, env)
	fmt.Fprintf(os.Stderr, "%s shim: exec %s: %v\n", identifier, real, err)
	return exitNotExecutable
}

// makeShims creates dir (mode 0700) with one symlink per agent name pointing at this binary. It
// replaces only its own: a symlink to a t3-supervise binary (an earlier run's, or an older
// binary's path). Anything else of that name (the user's real claude, when --shim-dir points at
// a directory of theirs) is left alone and named in the error; the other shims are still made.
func makeShims(dir string, names []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("shim directory: %w", err)
	}
	var errs []error
	for _, n := range names {
		link := filepath.Join(dir, n)
		if err := removeOwnShim(link, self); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Symlink(self, link); err != nil {
			errs = append(errs, fmt.Errorf("shim %s: %w", link, err))
		}
	}
	return errors.Join(errs...)
}

// removeOwnShim removes link if it is a shim (a symlink to self, or to any binary named
// t3-supervise*); it is fine if nothing is there. Anything else there is an error.
func removeOwnShim(link, self string) error {
	st, err := os.Lstat(link)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("shim %s: %w", link, err)
	}
	if st.Mode()&fs.ModeSymlink == 0 {
		return fmt.Errorf("shim %s: a %s that is not ours is there: leaving it, no shim of that name", link, fileKind(st.Mode()))
	}
	target, err := os.Readlink(link)
	if err != nil {
		return fmt.Errorf("shim %s: %w", link, err)
	}
	if !sameFile(link, self) && !strings.HasPrefix(filepath.Base(target), "t3-supervise") {
		return fmt.Errorf("shim %s: a symlink to %s, not to t3-supervise, is there: leaving it, no shim of that name", link, target)
	}
	if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("shim %s: %w", link, err)
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "directory"
	}
	return "file (" + m.Type().String() + ")"
}

// removeShims removes what makeShims made, and nothing else.
func removeShims(dir string, names []string) {
	self, _ := os.Executable()
	for _, n := range names {
		_ = removeOwnShim(filepath.Join(dir, n), self)
	}
	_ = os.Remove(dir) // only if empty: never more than we made
}
