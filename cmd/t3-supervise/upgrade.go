//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"t3-supervise/cgroup"
)

// Upgrades that never kill a busy session. dpkg replaces /usr/bin/t3-supervise by rename (the
// new file is unpacked as .dpkg-new and renamed over the old one), so a running supervisor goes
// on executing the old inode: /proc/self/exe then reads "... (deleted)". The package's postinst
// only runs daemon-reload and restarts nothing (packaging/postinst). Each supervisor notices the
// new file itself, by a stat of its path at every idle tick (a few microseconds every 5 s; an
// inotify watch would cost one of the user's 128 instances for nothing faster), and moves to it
// the next time its user is idle, by the idle definition of --restart-on-rotation=when-idle
// (cgroup.IdleGate): t3 is stopped gracefully and the supervisor exits 73, which systemd restarts
// (Restart=always; 73 is not in RestartPreventExitStatus=), so the new binary starts through
// ExecStart= and NRestarts counts the move.
//
// An operator can ask for the move by SIGUSR2, which is the unit's ExecReload= (systemctl
// reload t3-supervise@USER): it means "restart onto the installed binary, and the unit's current
// settings, the next time this user is idle", whether or not the binary changed. It never means
// "now, even if busy": a reload is what configuration management sends freely, and it must not
// kill work; systemctl restart is the way to move a busy unit at once.
//
// Between the upgrade and the move, agents that t3 spawns through PATH go through the new
// binary's shim (the shim directory links to the path, not to the running inode): the shim's
// contract with the supervisor is the cgroup layout and T3_SUPERVISE_AGENT_OOM_SCORE_ADJ, which
// a version must keep, or be installed with a restart.

// version is this build's version, the Debian package's (packaging/version), set by `make build`
// with -ldflags "-X main.version=...". Empty in a plain go build: buildVersion says "devel" then.
// The one version of the binary: `t3-supervise version`, the starting event, status's
// running_version and state.json's version (t3_supervise_build_info) all say buildVersion.
var version = ""

// buildVersion is what `t3-supervise version` prints after the program's name.
func buildVersion() string {
	if version != "" {
		return version
	}
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			v += "+" + rev
			if modified == "true" {
				v += ".dirty"
			}
		}
	}
	return v
}

// upgradeTick is how often the binary's path is checked and the upgrade's idle gate fed with a
// busy reading (a ticker of its own in the serve loop). A string so that tests can shorten it at build time (go build -ldflags
// "-X main.upgradeTick=100ms", as refreshFloor) without a flag an operator could set.
var upgradeTick = "5s"

// fileID identifies one file: the inode (device and number) and, for a file rewritten in
// place, its size and modification time.
type fileID struct {
	Dev, Ino uint64
	Size     int64
	Mtime    time.Time
}

func (a fileID) sameInode(b fileID) bool { return a.Dev == b.Dev && a.Ino == b.Ino }
func (a fileID) isZero() bool            { return a == fileID{} }

// statID stats path (following symlinks: /proc/self/exe is one to the running inode, even
// once that inode has no name left).
func statID(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, fmt.Errorf("stat %s: no inode", path)
	}
	if !fi.Mode().IsRegular() {
		return fileID{}, fmt.Errorf("%s is not a regular file", path)
	}
	return fileID{Dev: uint64(st.Dev), Ino: st.Ino, Size: fi.Size(), Mtime: fi.ModTime()}, nil
}

// upgradeReading is what the supervisor knows at one idle tick.
type upgradeReading struct {
	Now       time.Time
	Activity  cgroup.Verdict // the agents' activity as last judged (the activity sampler's)
	Stale     bool           // the file at the binary's path is not the one running
	Broken    bool           // that file failed to run `version`: never restart into it
	Requested bool           // an operator asked (SIGUSR2: systemctl reload)
	Missing   bool           // nothing is installed at the path: a restart could not start anything
}

// upgradeDecision is what to do at that tick.
type upgradeDecision int

const (
	upgradeNothing upgradeDecision = iota // nothing to move to and nothing asked
	upgradeWait                           // a move is wanted; the user is not idle (long enough)
	upgradeNow                            // stop t3 and exit 73
)

func (d upgradeDecision) String() string {
	return [...]string{"nothing", "wait", "now"}[d]
}

// upgradeGate is the pure decision: readings in, decision out, the clock in the readings.
type upgradeGate struct {
	Policy string          // --restart-on-upgrade: when-idle or never
	Idle   cgroup.IdleGate // the one idle definition, fed with every reading
}

// decide takes one reading. The idle gate sees every reading, wanted or not, so that a user who
// has been idle for an hour when the package is upgraded moves at the next tick, not
// --rotation-idle later.
func (g *upgradeGate) decide(r upgradeReading) upgradeDecision {
	idle := g.Idle.Idle(r.Now, r.Activity)
	want := r.Requested || (r.Stale && g.Policy == "when-idle")
	switch {
	case !want || r.Missing || (r.Stale && r.Broken):
		return upgradeNothing
	case idle:
		return upgradeNow
	}
	return upgradeWait
}

// upgrader is the I/O around the gate: the binary's path watched, events, the state file that
// `status` reads.
type upgrader struct {
	cfg       *config
	path      string // the path systemd starts (os.Executable: /proc/self/exe without " (deleted)")
	running   fileID // the inode this process executes
	seen      fileID // the file last seen at path (zero: none)
	stale     bool
	requested bool
	broken    fileID // a file at path that failed its version probe
	installed string // the installed binary's version, once probed
	gate      upgradeGate
	waiting   bool // upgrade_pending was reported for the current wait
	statePath string
	published BinaryState
	dpkgDB    string       // dpkg's status file, for "is the package still being installed?"
	unsettled string       // the dpkg state that held the move back last (reported once)
	disabled  error        // the running binary cannot be identified: nothing is watched
	tree      *cgroup.Tree // the unit's cgroup tree, nil with --no-cgroup: the probe is announced to its police
}

func newUpgrader(cfg *config) *upgrader {
	u := &upgrader{cfg: cfg, gate: upgradeGate{Policy: cfg.Upgrade, Idle: cgroup.IdleGate{Need: cfg.Rotation.Idle}}, dpkgDB: dpkgStatusFile}
	if cfg.RuntimeDir != "" {
		u.statePath = filepath.Join(cfg.RuntimeDir, binaryStateFile)
	}
	path, err := os.Executable()
	if err == nil {
		u.running, err = statID("/proc/self/exe")
	}
	if err != nil {
		u.disabled = fmt.Errorf("the running binary: %w", err)
		return u
	}
	u.path, u.seen = path, u.running
	return u
}

// poll stats the path and reports a change of the file there.
func (u *upgrader) poll(ev *events) {
	if u.disabled != nil {
		return
	}
	id, err := statID(u.path)
	if err != nil {
		if !u.seen.isZero() {
			ev.emit(BinaryRemovedEvent{Binary: u.path, RunningVersion: buildVersion(), Err: err})
		}
		u.seen, u.stale = fileID{}, false
		return
	}
	if id == u.seen {
		return
	}
	u.seen = id
	u.stale = !id.sameInode(u.running)
	u.installed, u.waiting = "", false
	if !u.stale {
		return // back to the running file (a package downgrade undone, a restored backup)
	}
	ev.emit(BinaryReplacedEvent{Binary: u.path, RunningVersion: buildVersion(), RunningInode: u.running.Ino,
		InstalledInode: id.Ino, Plan: u.plan()})
}

// plan says when the move happens.
func (u *upgrader) plan() string {
	if u.cfg.Upgrade == "never" && !u.requested {
		return "no restart until an operator asks (--restart-on-upgrade=never; systemctl reload)"
	}
	return fmt.Sprintf("t3 and its agents keep running; the supervisor restarts onto it once the agents have been idle for %v (by CPU time, --busy-cpu)", u.cfg.Rotation.Idle)
}

// request takes an operator's SIGUSR2.
func (u *upgrader) request(ev *events, sig os.Signal) {
	u.poll(ev)
	u.requested, u.waiting = true, false
	what := "the same binary, with the unit's current settings"
	if u.stale {
		what = "the binary installed at " + u.path
	}
	ev.emit(UpgradeRequestedEvent{Signal: sigName(sig), Binary: u.path, Stale: u.stale, Onto: what, Idle: u.cfg.Rotation.Idle})
}

// observe takes the agents' last verdict at a tick; it returns true when t3 must be stopped for
// the move.
func (u *upgrader) observe(ev *events, now time.Time, act cgroup.Verdict) bool {
	u.poll(ev)
	defer u.publish(ev)
	r := upgradeReading{Now: now, Activity: act, Stale: u.stale, Requested: u.requested, Missing: u.seen.isZero(),
		Broken: u.stale && !u.broken.isZero() && u.broken == u.seen}
	switch u.gate.decide(r) {
	case upgradeWait:
		if !u.waiting {
			u.waiting = true
			var why string
			switch {
			case act.Busy:
				why = "the agents are busy"
			case act.Young > 0 && u.gate.Idle.IdleFor(now) >= u.cfg.Rotation.Idle:
				why = fmt.Sprintf("%d agent leaf too young to judge (--busy-min-age %v)", act.Young, u.cfg.Activity.MinAge)
			default:
				why = fmt.Sprintf("the agents have been idle for %v, short of %v", u.gate.Idle.IdleFor(now).Round(time.Second), u.cfg.Rotation.Idle)
			}
			ev.emit(UpgradePendingEvent{Binary: u.path, Busy: act.Busy, Why: why})
		}
	case upgradeNow:
		if !u.stale {
			return true
		}
		if state := dpkgState(u.dpkgDB, packageName); !dpkgSettled(state) {
			// dpkg renames the new binary in at unpack and runs postinst's daemon-reload at
			// configure, which in an apt run may come minutes later. A restart in between would
			// start the new binary under the old unit file, and nothing would restart it again
			// once the new unit is loaded.
			if u.unsettled != state {
				u.unsettled = state
				ev.emit(UpgradePendingEvent{Binary: u.path, DpkgState: state})
			}
			return false
		}
		done := func() {}
		if u.tree != nil {
			// The probe starts in supervisor/, where the escape police kills any process but
			// the supervisor (cgroup/police_linux.go): it is announced first.
			done = u.tree.ExpectChild(os.Getpid(), "/proc/self/exe", u.path)
		}
		v, err := probeVersion(u.path)
		done()
		if err != nil {
			// A binary that cannot say its version would not start either: restarting into it
			// would turn an upgrade into an outage. Wait for the next file at the path.
			u.broken = u.seen
			ev.emit(UpgradeRefusedEvent{Binary: u.path, RunningVersion: buildVersion(), Err: err})
			return false
		}
		u.installed = v
		return true
	}
	return false
}

// restartEvent is upgrade_restart: t3 (pid) is stopped for the move.
func (u *upgrader) restartEvent(pid int, now time.Time) UpgradeRestartEvent {
	return UpgradeRestartEvent{PID: pid, ExitCode: exitUpgrade, Binary: u.path, RunningVersion: buildVersion(),
		InstalledVersion: u.installedVersion(), Stale: u.stale, Requested: u.requested,
		IdleFor: u.gate.Idle.IdleFor(now).Round(time.Second)}
}

func (u *upgrader) installedVersion() string {
	if !u.stale {
		return buildVersion()
	}
	return u.installed
}

// probeVersion runs `PATH version` and returns the version it prints. It runs in the serve loop,
// which also reaps orphans on SIGCHLD (--no-cgroup): synchronously, so that no reap can take the
// probe's exit status before Wait does.
func probeVersion(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "version")
	// argv[0] says "t3-supervise" whatever the file's name: another name would make it a shim.
	cmd.Args[0] = identifier
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	var out bytes.Buffer
	cmd.Stdout = &limitedWriter{w: &out, n: 4096}
	err := cmd.Run()
	if err != nil {
		return "", fmt.Errorf("%s version: %w", path, err)
	}
	line, _, _ := strings.Cut(out.String(), "\n")
	name, v, ok := strings.Cut(strings.TrimSpace(line), " ")
	if !ok || name != identifier || v == "" || strings.ContainsAny(v, " \t") {
		return "", fmt.Errorf("%s version printed %q, not \"%s VERSION\"", path, trim(line, 80), identifier)
	}
	return v, nil
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		if _, err := l.w.Write(p[:l.n]); err != nil {
			return 0, err
		}
		l.n = 0
		return len(p), nil
	}
	l.n -= len(p)
	return l.w.Write(p)
}

// packageName is the Debian package that installs the binary (packaging/nfpm.yaml).
const packageName = "t3-supervise"

// dpkgStatusFile is dpkg's database of package states (dpkg(1), FILES; deb-control(5)).
const dpkgStatusFile = "/var/lib/dpkg/status"

// dpkgState is the package's state as dpkg-query would say it: the third word of its Status:
// field (installed, unpacked, half-configured, ...), "" when dpkg does not know it (make install,
// no dpkg) or nothing can be read. dpkg writes the status file only at checkpoints; in between,
// each change is a record in updates/ beside it (numbered, applied in order, the last one wins),
// so a run in progress shows there first.
func dpkgState(statusFile, pkg string) string {
	state := ""
	read := func(path string) {
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		if s := parseDpkgState(f, pkg); s != "" {
			state = s
		}
	}
	read(statusFile)
	updates := filepath.Join(filepath.Dir(statusFile), "updates")
	entries, _ := os.ReadDir(updates) // sorted by name; dpkg numbers them with fixed width
	for _, e := range entries {
		if n := e.Name(); n != "" && strings.Trim(n, "0123456789") == "" {
			read(filepath.Join(updates, n))
		}
	}
	return state
}

func parseDpkgState(r io.Reader, pkg string) string {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	in := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			in = false
		case strings.HasPrefix(line, "Package: "):
			in = strings.TrimSpace(strings.TrimPrefix(line, "Package: ")) == pkg
		case in && strings.HasPrefix(line, "Status: "):
			if f := strings.Fields(strings.TrimPrefix(line, "Status: ")); len(f) == 3 {
				return f[2]
			}
		}
	}
	return ""
}

// dpkgSettled says whether a package in that state is done being installed: not in the middle
// of an unpack or a configure (dpkg-query(1), "Package states").
func dpkgSettled(state string) bool {
	switch state {
	case "unpacked", "half-configured", "half-installed":
		return false
	}
	return true
}

// binaryStateFile is where a running supervisor keeps, for `status`, which binary it runs and
// whether it waits to move to another (in its RuntimeDirectory, beside kills.json).
const binaryStateFile = "binary.json"

// BinaryState is status's binary fields, as the supervisor knows them. Stable: fields are only
// added. Exported because statusReport embeds it by pointer (absent when unknown), and
// encoding/json decodes into an embedded pointer only through an exported field (--all --json
// reads the reports back).
type BinaryState struct {
	Binary           string `json:"binary"`
	RunningVersion   string `json:"running_version"`
	InstalledVersion string `json:"installed_version,omitempty"` // "" until known
	BinaryStale      bool   `json:"binary_stale"`
	UpgradePending   bool   `json:"upgrade_pending"`   // a move waits for the user to be idle
	UpgradeRequested bool   `json:"upgrade_requested"` // an operator asked (systemctl reload)
	RestartOnUpgrade string `json:"restart_on_upgrade"`
}

func (u *upgrader) state() BinaryState {
	return BinaryState{Binary: u.path, RunningVersion: buildVersion(), InstalledVersion: u.installedVersion(),
		BinaryStale: u.stale, UpgradePending: u.requested || (u.stale && u.cfg.Upgrade == "when-idle"),
		UpgradeRequested: u.requested, RestartOnUpgrade: u.cfg.Upgrade}
}

// publish writes the state file when the state changed (writeFileAtomic: status never reads
// half a file).
func (u *upgrader) publish(ev *events) {
	s := u.state()
	if u.statePath == "" || s == u.published {
		return
	}
	if err := writeFileAtomic(u.statePath, s); err != nil {
		ev.emit(InternalErrorEvent{Err: fmt.Errorf("writing %s: %w", u.statePath, err)})
		return
	}
	u.published = s
}

// readBinaryState is status's reading of a unit's binary. The file is the supervisor's (the
// user's); the live check is the kernel's: the inode the supervisor process executes against
// the file at the binary's path, with no path followed but /proc's and nothing executed (root
// may run status, and neither the file nor the cgroup's supervisor/ is root's to trust).
// The file is read by readRuntimeJSON (owned by uid, the unit's user); a refused or unreadable
// one counts as absent, and the kernel's check below still runs.
func readBinaryState(runtimeDir string, uid, supervisorPID int) *BinaryState {
	var s BinaryState
	if err := readRuntimeJSON(runtimeDir, binaryStateFile, uid, &s); err != nil {
		s = BinaryState{}
	}
	exe := fmt.Sprintf("/proc/%d/exe", supervisorPID)
	if s.Binary == "" && supervisorPID > 0 {
		if l, err := os.Readlink(exe); err == nil {
			s.Binary = strings.TrimSuffix(l, " (deleted)")
		}
	}
	if s.Binary == "" {
		return nil
	}
	if supervisorPID > 0 {
		running, err1 := statID(exe)
		installed, err2 := statID(s.Binary)
		fileSaid := s.BinaryStale
		if err1 == nil && err2 == nil {
			s.BinaryStale = !running.sameInode(installed)
		} else if err1 == nil && errors.Is(err2, os.ErrNotExist) {
			s.BinaryStale = true
		}
		switch {
		case !s.BinaryStale:
			s.InstalledVersion = s.RunningVersion
		case !fileSaid:
			s.InstalledVersion = "" // the supervisor has not seen the new file yet
		}
		// This status binary is the installed one: it knows the installed version itself.
		if self, err := statID("/proc/self/exe"); err == nil && err2 == nil && self.sameInode(installed) {
			s.InstalledVersion = buildVersion()
		}
	}
	return &s
}

// runVersion is `t3-supervise version`.
func runVersion(stdout io.Writer) int {
	fmt.Fprintf(stdout, "%s %s\n", identifier, buildVersion())
	return exitOK
}
