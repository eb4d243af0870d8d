//go:build linux

package main

import (
	"fmt"
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

// isShim reports whether the binary was invoked under an agent's name (a symlink in the shim
// directory) rather than as t3-supervise itself.
func isShim(argv0 string) bool {
	base := filepath.Base(argv0)
	return base != "" && !strings.HasPrefix(base, "t3-supervise") && base != "main"
}

// shim runs as `claude` (or another agent name) when t3 spawns an agent from PATH: it moves
// itself into its own agent cgroup leaf with a raised oom_score_adj, then execs the real program
// of that name found on the rest of PATH. A failure to place itself never keeps the agent from
// starting: it says so on stderr (t3 logs its agents' stderr) and runs the agent anyway.
func shim(argv []string, environ []string) int {
	name := filepath.Base(argv[0])
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
	err = syscall.Exec(real, argv, environ)
	fmt.Fprintf(os.Stderr, "%s shim: exec %s: %v\n", identifier, real, err)
	return exitNotExecutable
}

// makeShims creates dir (mode 0700) with one symlink per agent name pointing at this binary.
func makeShims(dir string, names []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("shim directory: %w", err)
	}
	for _, n := range names {
		link := filepath.Join(dir, n)
		_ = os.Remove(link) // a stale link from an earlier run, or an older binary's path
		if err := os.Symlink(self, link); err != nil {
			return fmt.Errorf("shim %s: %w", link, err)
		}
	}
	return nil
}

// removeShims removes what makeShims made.
func removeShims(dir string, names []string) {
	for _, n := range names {
		_ = os.Remove(filepath.Join(dir, n))
	}
	_ = os.Remove(dir) // only if empty: never more than we made
}
