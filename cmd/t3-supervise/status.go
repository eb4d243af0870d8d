//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"t3-supervise/cgroup"
)

// exitNotRunning is status's answer when the unit's subtree is not there (LSB: "program is
// not running", as systemctl status uses it).
const exitNotRunning = 3

// statusReport is `status --json`: the cgroup snapshot plus the last kills the supervisor
// recorded. Stable: fields are only added.
type statusReport struct {
	*cgroup.Status
	User      string       `json:"user"`
	Unit      string       `json:"unit"`
	LastKills []killRecord `json:"last_kills"`
}

// killRecord is one kill, as the supervisor keeps them in its runtime directory.
type killRecord struct {
	Time   time.Time     `json:"time"`
	Killer string        `json:"killer"` // kernel (oom_kill) or t3-supervise (pressure_kill)
	Signal string        `json:"signal,omitempty"`
	Victim cgroup.Victim `json:"victim"`
}

const killsFile = "kills.json"

const statusHelp = `t3-supervise status: what a running t3-supervise@USER.service is doing

USAGE
  t3-supervise status [--user USER] [--json]

  Reads the unit's live cgroup tree and /proc (root or the user may run it; it does not need to
  be the supervisor's parent): the supervisor and server processes, every agent leaf with its
  processes (pid, comm, cmdline, RSS), memory.current/peak and memory.events counters, and the
  last kills. "busy" is true when any agent leaf holds a process: this replaces the fleet's
  "pgrep -P MainPID" check, which breaks once the supervisor is MainPID.

  The JSON form is stable (fields are only ever added; "schema" is 1).

EXIT STATUS
  0  the unit is running under t3-supervise
  3  it is not (no subtree at the unit's cgroup)
  64 usage

FLAGS
`

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("t3-supervise status", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var userName, cg, runtimeDir string
	var asJSON bool
	fs.StringVar(&userName, "user", "", "the unit's user, t3-supervise@USER.service (default: the current user)")
	fs.StringVar(&cg, "cgroup", "", "the unit's cgroup, as systemctl show -p ControlGroup prints it (default: derived from --user)")
	fs.StringVar(&runtimeDir, "runtime-dir", "", "the unit's RuntimeDirectory, where the last kills are kept (default: /run/t3-supervise/USER)")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(stdout, statusHelp+fs.FlagUsages())
			return exitOK
		}
		fmt.Fprintf(stderr, "%s status: %v\n", identifier, err)
		return exitUsage
	}
	if userName == "" {
		me, err := user.Current()
		if err != nil {
			fmt.Fprintf(stderr, "%s status: %v\n", identifier, err)
			return exitUsage
		}
		userName = me.Username
	}
	tree := cgroup.UnitTree("", userName)
	if cg != "" {
		tree = cgroup.CgroupTree("", cg)
	}
	if runtimeDir == "" {
		runtimeDir = filepath.Join("/run/t3-supervise", userName)
	}
	st, err := tree.ReadStatus()
	if err != nil {
		fmt.Fprintf(stderr, "%s status: t3-supervise@%s.service is not running: %v\n", identifier, userName, err)
		return exitNotRunning
	}
	rep := statusReport{Status: st, User: userName, Unit: "t3-supervise@" + userName + ".service", LastKills: readKills(runtimeDir)}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
		return exitOK
	}
	printStatus(stdout, rep)
	return exitOK
}

func readKills(dir string) []killRecord {
	kills := []killRecord{}
	b, err := os.ReadFile(filepath.Join(dir, killsFile))
	if err == nil {
		_ = json.Unmarshal(b, &kills)
	}
	return kills
}

func printStatus(w io.Writer, r statusReport) {
	fmt.Fprintf(w, "%s  %s\n", r.Unit, r.Cgroup)
	proc := func(label string, p *cgroup.ProcInfo) {
		if p == nil {
			fmt.Fprintf(w, "%-11s none\n", label)
			return
		}
		fmt.Fprintf(w, "%-11s pid %d %s (%s) %s  %s\n", label, p.PID, p.Comm, p.State, mib(p.RSS), trim(p.Cmdline, 60))
	}
	proc("supervisor", r.Supervisor)
	proc("server", r.Server)
	fmt.Fprintf(w, "%-11s %s of %s, peak %s; oom_kill %d, max %d\n", "workload", mib(r.Workload.Current), r.Workload.Max,
		mib(r.Workload.Peak), r.Workload.Events.OOMKill, r.Workload.Events.Max)
	busy := "idle"
	if r.Busy {
		busy = "busy"
	}
	fmt.Fprintf(w, "%-11s %d leaves, memory.high %s, %s\n", "agents", len(r.Agents), r.AgentsHigh, busy)
	for _, a := range r.Agents {
		fmt.Fprintf(w, "  %-18s %s, peak %s; high %d, oom_kill %d\n", a.Leaf, mib(a.Memory.Current), mib(a.Memory.Peak), a.Memory.Events.High, a.Memory.Events.OOMKill)
		for _, p := range a.Processes {
			fmt.Fprintf(w, "    pid %-7d %-16s %-9s %s\n", p.PID, p.Comm, mib(p.RSS), trim(p.Cmdline, 60))
		}
	}
	for _, k := range r.LastKills {
		fmt.Fprintf(w, "%-11s %s %s by %s: %s (pid %d, %s, %s)\n", "kill", k.Time.Format(time.RFC3339), k.Signal, k.Killer,
			k.Victim.Comm, k.Victim.PID, mib(k.Victim.RSS), k.Victim.Leaf)
	}
}

func trim(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}
