//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/user"
	"path/filepath"
	"strconv"
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
	User      string              `json:"user"`
	Unit      string              `json:"unit"`
	LastKills []cgroup.KillRecord `json:"last_kills"`
	// BusyBasis says what "busy" rests on: "activity", the supervisor's judgement of the agents'
	// CPU time (Activity); or "presence", a process in some agent leaf, when there is no fresh
	// judgement (no runtime directory, or a supervisor that stopped sampling).
	BusyBasis string          `json:"busy_basis"`
	Activity  *activityRecord `json:"activity"`
	// LastKillsError says why last_kills is empty although a kills file is there (refused:
	// a symlink, not a regular file, another owner, too large; or not JSON).
	LastKillsError string `json:"last_kills_error,omitempty"`
	// PSIMode and PSIModeReason: how the supervisor's watch learns of memory pressure
	// (cgroup.PSIMode: "trigger" or "sampling", and why), from its state.json; absent when it
	// did not say (the pressure kill off, or an older supervisor).
	PSIMode       string `json:"psi_mode,omitempty"`
	PSIModeReason string `json:"psi_mode_reason,omitempty"`
	// The token: token_source, kv_version, token_expires_at, token_expiry_source, as the
	// supervisor last knew them (expiry.go).
	credentialState
	// The binary fields (binary, binary_stale, running_version, installed_version, ...):
	// absent when the supervisor's binary cannot be told.
	*BinaryState
}

const statusHelp = `t3-supervise status: what a running t3-supervise@USER.service is doing

USAGE
  t3-supervise status [--user USER] [--json | --format text|json|prom] [--output FILE]
  t3-supervise status --all [--format text|json|prom] [--output FILE]

  Reads the unit's live cgroup tree and /proc (root or the user may run it; it does not need to
  be the supervisor's parent): the supervisor and server processes, every agent leaf with its
  processes (pid, comm, cmdline, RSS), memory.current/peak, memory.events counters and CPU
  time (cpu.stat usage_usec), and the last kills. "busy" replaces the fleet's "pgrep -P MainPID"
  check, which breaks once the supervisor is MainPID. The token as the supervisor last knew
  it: token_source, kv_version, token_expires_at (RFC 3339, null when unknown) and
  token_expiry_source (custom_metadata, created_time, or "" when unknown).

  "binary_stale" is true while the supervisor runs an older binary than the one installed at
  its path ("binary"; a package upgrade it has not moved to yet), "running_version" and
  "installed_version" say which; "upgrade_pending" that it moves when the user is idle, and
  "upgrade_requested" that an operator asked (systemctl reload).

BUSY AND IDLE
  Busy means activity, not presence: T3 keeps one claude per open session, idle ones included,
  and runs an account probe (claude --version, then a short SDK session) every 5 minutes. The
  agents are busy when one agent leaf that the supervisor has seen for at least --busy-min-age
  (30s) used more than --busy-cpu (1s) of CPU time in the last --busy-window (1m). The
  supervisor samples every leaf's cpu.stat every 5s (without a cgroup, --no-cgroup: the CPU
  time of each child of t3 and its descendants, from /proc), judges, and keeps the verdict in
  its runtime directory (activity.json); status shows that verdict, with "busy_basis":
  "activity". Measured with Claude Code 2.1.328: a session waiting for its next prompt uses
  about 2 ms of CPU a second, at most 0.51 s in a minute (just after a turn); a Bash tool at
  work 3-6 s a minute; the probe's leaves live about a second each (its SDK session is given
  up after 8s). So an open idle session and the probe are idle; a turn at work is busy once
  its leaf is 30s old, and for a minute after its last work. A trivial turn (an echo, 0.3 s)
  and a tool that only waits (sleep, a slow network) use too little CPU to count. Without a fresh verdict (no runtime directory, a sample
  older than 20s), "busy" falls back to presence (any process in an agent leaf) and
  "busy_basis" says "presence". --restart-on-rotation=when-idle restarts t3 once the agents
  have been idle for --rotation-idle, and not while a leaf younger than --busy-min-age is there;
  --restart-on-upgrade=when-idle moves to an upgraded binary by the same rule.

  The JSON form is stable (fields are only ever added; "schema" is 1); docs/status.md describes
  every field.

  Run by root, it trusts nothing the user controls: --user must be a user name that exists,
  --cgroup a path inside the cgroup2 hierarchy with no ".." and no symlink, and kills.json is
  read only if it is a regular file (never through a symlink, never a FIFO) owned by the user
  and at most 1 MiB; else last_kills is empty and last_kills_error says why.

ALL UNITS, PROMETHEUS
  --all reads every t3-supervise@*.service on the host: the units systemd has loaded (their
  ActiveState, SubState, NRestarts and ControlGroup, asked over D-Bus), every unit cgroup in
  system-t3\x2dsupervise.slice and every runtime directory in /run/t3-supervise. --format prom
  prints them in the Prometheus text format for node_exporter's textfile collector, one series
  per user (label user; the metric names are in the README, "Metrics"). The numbers a running
  supervisor keeps itself (answering probes, pressure kills, Vault re-reads, its version) come
  from its state.json in the runtime directory, i.e. from the unit's user.

  --output FILE writes FILE atomically instead of printing: a temporary file in FILE's
  directory, fsync, rename (what the textfile collector needs: it may read at any moment). The
  t3-supervise-metrics.timer runs
    t3-supervise status --all --format prom --output /var/lib/prometheus/node-exporter/t3-supervise.prom

EXIT STATUS
  0  the unit is running under t3-supervise (--all: always, unless systemd cannot be asked)
  3  it is not (no subtree at the unit's cgroup); --format prom prints its metrics all the same
  64 usage
  69 --all: systemd could not be asked which units there are; nothing is written
  73 --output: FILE could not be written

FLAGS
`

// Exit codes of status besides exitOK, exitNotRunning and exitUsage (sysexits(3)).
const (
	exitStatusSystemd = 69 // EX_UNAVAILABLE
	exitStatusOutput  = 73 // EX_CANTCREAT
)

// statusInput is one status call: the flags, and the host's places (tests point them at a fake
// cgroupfs, runtime root and systemd).
type statusInput struct {
	user, cgroup, runtimeDir string
	all                      bool
	format                   string // text, json or prom
	output                   string
	mount                    string // the cgroup2 mount ("": cgroup.DefaultMount)
	runtimeRoot              string // where RuntimeDirectory=t3-supervise/%i lands
	systemd                  systemdUnits
	uidOf                    func(user string) (int, error) // statusUser; tests: the test's own uid
	fakeFS                   bool                           // tests: mount is a plain directory
}

// statusFlagSet defines the flags of status on in and asJSON.
func statusFlagSet(in *statusInput, asJSON *bool) *pflag.FlagSet {
	fs := pflag.NewFlagSet("t3-supervise status", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&in.user, "user", "", "the unit's user, t3-supervise@USER.service (default: the current user)")
	fs.StringVar(&in.cgroup, "cgroup", "", "the unit's cgroup, as systemctl show -p ControlGroup prints it (default: derived from --user)")
	fs.StringVar(&in.runtimeDir, "runtime-dir", "", "the unit's RuntimeDirectory, where the last kills are kept (default: /run/t3-supervise/USER)")
	fs.BoolVar(asJSON, "json", false, "print JSON (--format json)")
	fs.BoolVar(&in.all, "all", false, "every t3-supervise@*.service on the host (needs root for the other users' /proc)")
	fs.StringVar(&in.format, "format", "text", "text, json or prom (Prometheus text format)")
	fs.StringVar(&in.output, "output", "", "write to FILE atomically instead of standard output")
	return fs
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	in := statusInput{runtimeRoot: runtimeRoot, systemd: systemdDBus, uidOf: statusUser}
	var asJSON bool
	fs := statusFlagSet(&in, &asJSON)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(stdout, statusHelp+fs.FlagUsages())
			return exitOK
		}
		fmt.Fprintf(stderr, "%s status: %v\n", identifier, err)
		return exitUsage
	}
	if asJSON {
		if fs.Changed("format") && in.format != "json" {
			fmt.Fprintf(stderr, "%s status: --json and --format %s contradict each other\n", identifier, in.format)
			return exitUsage
		}
		in.format = "json"
	}
	switch {
	case in.format != "text" && in.format != "json" && in.format != "prom":
		fmt.Fprintf(stderr, "%s status: --format %q: want text, json or prom\n", identifier, in.format)
		return exitUsage
	case in.all && (in.user != "" || in.cgroup != "" || in.runtimeDir != ""):
		fmt.Fprintf(stderr, "%s status: --all reads every unit: no --user, --cgroup or --runtime-dir\n", identifier)
		return exitUsage
	}
	if !in.all && in.user == "" {
		me, err := user.Current()
		if err != nil {
			fmt.Fprintf(stderr, "%s status: %v\n", identifier, err)
			return exitUsage
		}
		in.user = me.Username
	}
	if !in.all {
		// The name becomes a path (the runtime directory, the unit's cgroup): "../x" would
		// climb out of both.
		if _, err := in.uidOf(in.user); err != nil {
			fmt.Fprintf(stderr, "%s status: %v\n", identifier, err)
			return exitUsage
		}
		if in.cgroup != "" {
			if _, err := cgroup.CgroupTree("", in.cgroup); err != nil {
				fmt.Fprintf(stderr, "%s status: --cgroup: %v\n", identifier, err)
				return exitUsage
			}
		}
	}
	return statusMain(in, stdout, stderr)
}

// runtimeRoot is where systemd makes RuntimeDirectory=t3-supervise/%i (systemd.exec(5)).
const runtimeRoot = "/run/t3-supervise"

func statusMain(in statusInput, stdout, stderr io.Writer) int {
	var out bytes.Buffer
	code := exitOK
	if in.all || in.format == "prom" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		units, err := gatherUnits(ctx, in)
		if err != nil {
			fmt.Fprintf(stderr, "%s status: %v\n", identifier, err)
			return exitStatusSystemd
		}
		if !in.all && (len(units) == 0 || units[0].Report == nil) {
			code = exitNotRunning
		}
		if err := printUnits(&out, in.format, units); err != nil {
			fmt.Fprintf(stderr, "%s status: %v\n", identifier, err)
			return exitInternal
		}
	} else {
		uid, _ := in.uidOf(in.user)
		rep, err := readUnit(in.user, uid, in.tree(in.user, in.cgroup), in.unitRuntimeDir(in.user))
		if err != nil {
			fmt.Fprintf(stderr, "%s status: t3-supervise@%s.service is not running: %v\n", identifier, in.user, err)
			return exitNotRunning
		}
		if rep.LastKillsError != "" {
			fmt.Fprintf(stderr, "%s status: last kills not shown: %s\n", identifier, rep.LastKillsError)
		}
		printReport(&out, in.format, *rep)
	}
	if in.output == "" {
		_, _ = stdout.Write(out.Bytes())
		return code
	}
	if err := writeAtomic(in.output, out.Bytes(), 0o644); err != nil {
		fmt.Fprintf(stderr, "%s status: writing %s: %v\n", identifier, in.output, err)
		return exitStatusOutput
	}
	return code
}

func (in statusInput) tree(userName, cg string) *cgroup.Tree {
	t := cgroup.UnitTree(in.mount, userName)
	// cg is --cgroup (checked in runStatus) or systemd's ControlGroup.
	if ct, err := cgroup.CgroupTree(in.mount, cg); cg != "" && err == nil {
		t = ct
	}
	if in.fakeFS {
		t.OnFakeFS()
	}
	return t
}

func (in statusInput) unitRuntimeDir(userName string) string {
	if in.runtimeDir != "" {
		return in.runtimeDir
	}
	return filepath.Join(in.runtimeRoot, userName)
}

// readUnit is one unit's report: its cgroup tree and the kills its supervisor recorded. It fails
// only when the subtree is not there.
func readUnit(userName string, uid int, tree *cgroup.Tree, runtimeDir string) (*statusReport, error) {
	st, err := tree.ReadStatus()
	if err != nil {
		return nil, err
	}
	rep := &statusReport{Status: st, User: userName, Unit: unitName(userName), credentialState: readCredentialState(runtimeDir, uid)}
	// uid owns the runtime directory's files; -1 (the user is unknown to this host) refuses them.
	// They are the user's: the kill log's reader refuses a symlink, a FIFO, a foreign or huge file.
	rep.LastKills, err = cgroup.ReadKillLog(runtimeDir, uid)
	if err != nil {
		rep.LastKillsError = err.Error()
	}
	applyActivity(rep, runtimeDir, uid, time.Now())
	if s := readState(runtimeDir, uid); s != nil {
		rep.PSIMode, rep.PSIModeReason = s.PSIMode, s.PSIModeReason
	}
	if st.Supervisor != nil {
		rep.BinaryState = readBinaryState(runtimeDir, uid, st.Supervisor.PID)
	}
	return rep, nil
}

func unitName(userName string) string { return "t3-supervise@" + userName + ".service" }

func printReport(w io.Writer, format string, rep statusReport) {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
		return
	}
	printStatus(w, rep)
}

// activityStale is how old the supervisor's last sample may be before status stops trusting it:
// a few sample intervals (the supervisor samples every activityInterval).
const activityStale = 4 * activityInterval

// applyActivity puts the supervisor's judgement of the agents' activity into r when it is
// fresh: busy is then its verdict, not the presence of a process.
func applyActivity(r *statusReport, runtimeDir string, uid int, now time.Time) {
	r.BusyBasis = "presence"
	a, err := readActivity(runtimeDir, uid)
	if err != nil || now.Sub(a.Time) > activityStale || a.Time.Sub(now) > activityStale {
		return
	}
	r.Activity, r.Busy, r.BusyBasis = a, a.Busy, "activity"
}

// statusUser checks --user: a plain user name (no '/', not "." or "..") of a user that
// exists, whose uid must own the kills file.
func statusUser(name string) (uid int, err error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return 0, fmt.Errorf("--user %q: not a user name", name)
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("--user %s: %w", name, err)
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return 0, fmt.Errorf("--user %s: uid %q", name, u.Uid)
	}
	return uid, nil
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
	if b := r.BinaryState; b != nil {
		fmt.Fprintf(w, "%-11s %s %s", "binary", b.Binary, b.RunningVersion)
		if b.BinaryStale {
			installed := b.InstalledVersion
			if installed == "" {
				installed = "a newer file"
			}
			fmt.Fprintf(w, ", stale: %s is installed", installed)
		}
		switch {
		case b.UpgradePending && b.UpgradeRequested:
			fmt.Fprint(w, "; restart asked (systemctl reload), when idle")
		case b.UpgradePending:
			fmt.Fprint(w, "; moves to it when idle")
		case b.BinaryStale:
			fmt.Fprintf(w, "; waits for systemctl reload (--restart-on-upgrade=%s)", b.RestartOnUpgrade)
		}
		fmt.Fprintln(w)
	}
	proc("server", r.Server)
	fmt.Fprintf(w, "%-11s %s of %s, peak %s; oom_kill %d, max %d\n", "workload", mib(r.Workload.Current), r.Workload.Max,
		mib(r.Workload.Peak), r.Workload.Events.OOMKill, r.Workload.Events.Max)
	busy := "idle"
	if r.Busy {
		busy = "busy"
	}
	if r.Activity != nil {
		busy += fmt.Sprintf(" since %s", r.Activity.Since.Format(time.RFC3339))
	} else {
		busy += " (by presence: no recent activity sample from the supervisor)"
	}
	fmt.Fprintf(w, "%-11s %d leaves, memory.high %s, %s\n", "agents", len(r.Agents), r.AgentsHigh, busy)
	if !r.PSI {
		fmt.Fprintf(w, "%-11s %s\n", "pressure", r.PSIError)
	}
	if r.PSIMode != "" {
		fmt.Fprintf(w, "%-11s %s: %s\n", "psi", r.PSIMode, r.PSIModeReason)
	}
	for _, a := range r.Agents {
		fmt.Fprintf(w, "  %-18s %s, peak %s; high %d, oom_kill %d; cpu %s%s\n", a.Leaf, mib(a.Memory.Current), mib(a.Memory.Peak),
			a.Memory.Events.High, a.Memory.Events.OOMKill, time.Duration(a.CPUUsageUSec)*time.Microsecond, leafActivity(r.Activity, a.Leaf))
		for _, p := range a.Processes {
			fmt.Fprintf(w, "    pid %-7d %-16s %-9s %s\n", p.PID, p.Comm, mib(p.RSS), trim(p.Cmdline, 60))
		}
	}
	if r.TokenSource != "" {
		tok := r.TokenSource
		if r.KVVersion > 0 {
			tok += fmt.Sprintf(" v%d", r.KVVersion)
		}
		if r.TokenExpiresAt != nil {
			tok += fmt.Sprintf(", expires %s (from %s)", r.TokenExpiresAt.Format(time.RFC3339), r.TokenExpirySource)
		} else {
			tok += ", expiry unknown"
		}
		fmt.Fprintf(w, "%-11s %s\n", "token", tok)
	}
	for _, k := range r.LastKills {
		fmt.Fprintf(w, "%-11s %s %s by %s: %s (pid %d, %s, %s)\n", "kill", k.Time.Format(time.RFC3339), k.Signal, k.Killer,
			k.Victim.Comm, k.Victim.PID, mib(k.Victim.RSS), k.Victim.Leaf)
	}
}

// leafActivity describes how the supervisor judged leaf, if it did.
func leafActivity(a *activityRecord, leaf string) string {
	if a == nil {
		return ""
	}
	for _, l := range a.Leaves {
		if l.Leaf == leaf {
			state := "idle"
			switch {
			case l.Young:
				state = "young, not counted"
			case l.Active:
				state = "active"
			}
			return fmt.Sprintf(", %v in the last %vs (%s)", time.Duration(l.WindowUSec)*time.Microsecond, a.Policy.WindowSec, state)
		}
	}
	return ""
}

func trim(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}
