//go:build linux

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"t3-supervise/cgroup"
	"t3-supervise/creds"
	"t3-supervise/supervise"
)

// healthState turns probe results into what systemd is told: READY=1 once t3 answers,
// WATCHDOG=1 after every answer, STATUS= kept current, and the decision to give up on a server
// that stopped answering. systemd then restarts the unit (Restart=always), so NRestarts and
// the unit's timestamps stay truthful; the supervisor never restarts t3 behind systemd's back.
type healthState struct {
	health    *supervise.Health // holds the readiness deadline and the liveness window
	clock     supervise.Clock   // health's: every timing decision here reads it
	notifier  supervise.Notifier
	ready     atomic.Bool
	lastExt   time.Time
	pid       int
	tree      *cgroup.Tree
	limits    cgroup.Limits
	tokenFrom string
	version   int
	lastKill  string
	failing   bool
	kills     cgroup.KillLog // the last few, for `status`
	probeURL  string
	expiry    *expiryWatch    // the token's expiry, for STATUS=; nil: none
	state     supervisorState // for `status --format prom`, kept in statePath
	statePath string          // "" when there is no runtime directory
	// refreshFailures is rotation.failures when the state last took it.
	refreshFailures uint64
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// newHealthState starts the readiness deadline (--ready-timeout) on clock now: call it when t3
// has just started.
func newHealthState(cfg *config, p *plan, pid int, tree *cgroup.Tree, clock supervise.Clock, n supervise.Notifier) *healthState {
	now := clock.Now()
	return &healthState{
		health: &supervise.Health{Window: cfg.Health.LivenessWindow, ReadyTimeout: cfg.Health.ReadyTimeout,
			Started: now, Clock: clock},
		clock:     clock,
		notifier:  n,
		pid:       pid,
		tree:      tree,
		limits:    cfg.Limits,
		tokenFrom: p.decision.From,
		version:   p.Credential.Version,
		kills:     cgroup.KillLog{Path: runtimePath(cfg.RuntimeDir, cgroup.KillLogFile), WriteFile: writeAtomic},
		state:     newSupervisorState(p.decision.From == creds.FromFallback, now),
		statePath: runtimePath(cfg.RuntimeDir, stateFile),
	}
}

func runtimePath(dir, name string) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, name)
}

// saveState writes the state file when a value in it changed (set says whether it did).
func (h *healthState) saveState(set func(s *supervisorState)) {
	before := h.state
	set(&h.state)
	if h.statePath == "" || (h.state == before && !h.state.Updated.IsZero()) {
		return
	}
	h.state.Updated = time.Now()
	_ = writeFileAtomic(h.statePath, h.state)
}

// startProber probes GET / on t3's address and port (supervise.ProbeURL) from its own goroutine, so a probe hanging for its
// whole timeout never holds up the event loop: every 250 ms until t3 first answers, then every
// --probe-interval. Without a known port there is nothing to probe: t3 counts as ready at once
// (and parseConfig refused that with a watchdog, which nothing could feed).
func (h *healthState) startProber(ctx context.Context, cfg *config) <-chan error {
	if cfg.Port == 0 {
		h.ready.Store(true)
		h.saveState(func(s *supervisorState) { s.Ready, s.Answering = true, true })
		h.notifier.Ready(h.status())
		return nil
	}
	interval := cfg.Health.ProbeInterval
	if wd, err := daemon.SdWatchdogEnabled(false); err == nil && wd > 0 && interval > wd/2 {
		// WATCHDOG=1 follows a good probe, so probes must come at least twice per WatchdogSec.
		interval = wd / 2
	}
	h.probeURL = supervise.ProbeURL(cfg.Host, cfg.Port)
	probe := supervise.NewProbe(h.probeURL, cfg.Health.ProbeTimeout)
	out := make(chan error)
	go func() {
		for {
			err := probe.Check(ctx)
			select {
			case out <- err:
			case <-ctx.Done():
				return
			}
			wait := 250 * time.Millisecond
			if h.ready.Load() {
				wait = interval
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// record takes one probe result; it returns true when the server must be stopped.
func (h *healthState) record(ev *events, err error) (giveUp bool) {
	switch h.health.Record(err) {
	case supervise.Ready:
		h.ready.Store(true)
		h.saveState(func(s *supervisorState) { s.Ready, s.Answering = true, true })
		h.notifier.Ready(h.status())
		ev.emit(ServerReadyEvent{PID: h.pid, Startup: h.sinceStart().Round(time.Millisecond), ProbeURL: h.probeURL})
	case supervise.Alive:
		h.saveState(func(s *supervisorState) { s.Answering = true })
		if h.failing {
			h.failing = false
			ev.emit(ServerReadyEvent{PID: h.pid})
		}
		h.notifier.Watchdog(h.status())
	case supervise.NeverReady:
		n, last := h.health.Failures()
		ev.emit(UnresponsiveEvent{PID: h.pid, Failures: n, ExitCode: exitUnresponsive, Last: last, Waited: h.sinceStart().Round(time.Second)})
		return true
	case supervise.Waiting:
		if now := h.clock.Now(); now.Sub(h.lastExt) > 5*time.Second {
			// Keep systemd's start timeout from firing while we still wait on our own deadline.
			h.lastExt = now
			h.notifier.ExtendTimeout(15 * time.Second)
		}
	case supervise.Failing:
		h.saveState(func(s *supervisorState) { s.Answering = false })
		if !h.failing {
			h.failing = true
			ev.emit(ProbeFailedEvent{PID: h.pid, Err: err})
		}
		h.notifier.Status(h.status())
	case supervise.Dead:
		h.saveState(func(s *supervisorState) { s.Answering = false })
		n, last := h.health.Failures()
		lastGood := h.health.LastGood()
		ev.emit(UnresponsiveEvent{PID: h.pid, Failures: n, LastGood: &lastGood, ExitCode: exitUnresponsive, Last: last, Memory: h.memory()})
		return true
	}
	return false
}

// noteEvent remembers the kills and the watch's PSI mode, for STATUS= and for `t3-supervise status`.
func (h *healthState) noteEvent(e cgroup.Event) {
	if m, ok := e.(cgroup.PressureMode); ok {
		h.saveState(func(s *supervisorState) { s.PSIMode, s.PSIModeReason = m.Mode, m.Reason })
		return
	}
	ke, ok := e.(cgroup.KillEvent)
	if !ok {
		return
	}
	kill := ke.Kill()
	k := cgroup.KillRecord{Time: time.Now(), Killer: identifier, Signal: kill.Signal, Victim: kill.Victim}
	if kill.Kernel {
		k.Killer = "kernel"
	}
	h.lastKill = fmt.Sprintf("%s %s (pid %d) at %s", kill.Kind, k.Victim.Comm, k.Victim.PID, k.Time.Format("15:04:05"))
	if _, ok := e.(cgroup.PressureKill); ok {
		h.saveState(func(s *supervisorState) { s.PressureKills++ })
	}
	_ = h.kills.Append(k)
	h.notifier.Status(h.status())
}

// sinceStart is how long t3 has run, on the clock of the readiness deadline.
func (h *healthState) sinceStart() time.Duration { return h.clock.Now().Sub(h.health.Started) }

// noteRefresh takes the state of the token's re-reads after each result.
func (h *healthState) noteRefresh(r *rotation) {
	h.saveState(func(s *supervisorState) {
		s.VaultRefreshFailures += r.failures - h.refreshFailures
		h.refreshFailures = r.failures
		s.VaultFailing = r.outage || (s.VaultFailing && r.lastOK.IsZero())
	})
}

func (h *healthState) memory() string {
	if h.tree == nil {
		return "no cgroup"
	}
	u := h.tree.Usage()
	return fmt.Sprintf("workload %s of %s, agents %d", mib(u.Current), h.limits.MemoryMax, u.Agents)
}

// status is the one-line STATUS= systemctl status shows.
func (h *healthState) status() string {
	parts := []string{fmt.Sprintf("t3 serve pid %d", h.pid)}
	if !h.ready.Load() {
		parts[0] += " (starting)"
	}
	parts = append(parts, h.memory())
	if h.lastKill != "" {
		parts = append(parts, "last "+h.lastKill)
	}
	tok := "token: " + h.tokenFrom
	if h.version > 0 {
		tok += fmt.Sprintf(" v%d", h.version)
	}
	if h.expiry != nil {
		if n := h.expiry.note(); n != "" {
			tok += ", " + n
		}
	}
	return strings.Join(append(parts, tok), "; ")
}
