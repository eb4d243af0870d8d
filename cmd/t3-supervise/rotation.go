//go:build linux

package main

import (
	"context"
	"fmt"
	"time"

	"t3-supervise/cgroup"
	"t3-supervise/creds"
	"t3-supervise/supervise"
)

// rotation follows the user's token in Vault while t3 runs: a re-read on a per-user schedule
// (and at once on SIGHUP), the env file kept in step, and — only if the operator asked for it —
// a restart so that t3 picks a new token up. Restarting t3 kills live agent sessions, hence
// "never" by default; the restart itself is an exit for systemd to carry out (Restart=), so the
// unit's NRestarts and timestamps stay truthful.
type rotation struct {
	cfg      *config
	client   *creds.Client
	sched    creds.Schedule
	backoff  creds.Backoff
	timer    *time.Timer
	results  chan refreshResult
	busy     bool      // a re-read is under way
	outage   bool      // the last re-read failed (reported once per outage)
	failures uint64    // failed re-reads, every one (for the metrics)
	lastOK   time.Time // when a re-read last got an answer from Vault
	current  creds.Secret
	version  int
	pending  bool            // a change waits for the restart policy
	idleGate cgroup.IdleGate // when-idle: since when the agents are idle, counted from the change
	last     time.Time       // when the last re-read started
	next     time.Time       // when the timer was last set to fire

	// gone is the opt-out answer (no secret, no field, deleted, destroyed) of a re-read while t3
	// holds a token, waiting for a second read to confirm it (Unknown: none waits); confirmAfter
	// is the pause before that read.
	gone         creds.Outcome
	confirmAfter time.Duration
}

// optOutConfirmDelay is the pause between a re-read that finds the token gone and the read that
// must agree before the env file is removed and the restart policy is asked. Defence in depth
// behind creds' judging of Vault's answers: a token disappears for good rarely, and a second
// look costs one request; a wrong "gone" logs the user out everywhere.
const optOutConfirmDelay = 5 * time.Second

// minSpacing is the least time between two re-reads asked for by SIGHUP: a storm of SIGHUPs
// makes one re-read a second at most, never a request storm against Vault.
const minSpacing = time.Second

type refreshResult struct {
	res creds.Result
	err error
}

// newRotation follows the token the plan decided, re-reading it through client (nil: never).
func newRotation(cfg *config, p *plan, client *creds.Client) *rotation {
	r := &rotation{
		cfg: cfg, client: client, sched: creds.NewSchedule(cfg.User, cfg.Rotation.Interval),
		results: make(chan refreshResult, 1), current: p.decision.Inject, version: p.Credential.Version,
		confirmAfter: optOutConfirmDelay, idleGate: cgroup.IdleGate{Need: cfg.Rotation.Idle},
	}
	r.backoff = creds.Backoff{Base: 15 * time.Second, Cap: max(r.sched.Interval, 15*time.Second)}
	r.timer = time.NewTimer(time.Hour)
	r.timer.Stop()
	if r.client != nil && r.sched.Enabled() {
		r.arm(r.sched.Next(time.Now()))
	}
	return r
}

// arm sets the timer for the next re-read at at.
func (r *rotation) arm(at time.Time) {
	r.next = at
	r.timer.Reset(time.Until(at))
}

// C fires when a scheduled re-read is due.
func (r *rotation) C() <-chan time.Time { return r.timer.C }

// start re-reads the token in the background (one at a time); the result arrives on results.
// A re-read asked for (SIGHUP) within minSpacing of the last one is dropped.
func (r *rotation) start(ctx context.Context, asked bool) {
	if r.client == nil || r.busy || (asked && time.Since(r.last) < minSpacing) {
		return
	}
	r.busy, r.last = true, time.Now()
	go func() {
		res, err := r.client.Resolve(ctx)
		select {
		case r.results <- refreshResult{res, err}:
		case <-ctx.Done():
		}
	}()
}

// handle takes a re-read's result: keeps the env file in step, reports, schedules the next.
func (r *rotation) handle(ev *events, rr refreshResult) {
	r.busy = false
	if rr.err != nil {
		// An outage changes nothing: t3 keeps its token, the env file stays. One event per
		// outage, then quiet, re-reading with backoff. A "gone" waiting for confirmation is
		// not confirmed by a failure: it must be seen twice in a row.
		r.gone = creds.Unknown
		r.failures++
		wait := r.backoff.Next()
		if !r.outage {
			r.outage = true
			ev.emit(RefreshFailedEvent{VaultPath: rr.res.Path, Err: rr.err, Next: wait})
		}
		r.arm(time.Now().Add(wait))
		return
	}
	r.lastOK = time.Now()
	if r.outage {
		r.outage = false
		ev.emit(RefreshRecoveredEvent{VaultPath: rr.res.Path, Failures: r.backoff.Failures()})
	}
	r.backoff.Reset()
	if r.sched.Enabled() {
		// Back to the user's own slot, not an interval from now: after an outage the fleet's
		// successes bunch up in the seconds after Vault returns (creds.Schedule).
		r.arm(r.sched.Next(time.Now()))
	}
	gone := r.gone
	r.gone = creds.Unknown
	switch {
	case rr.res.Outcome == creds.Found && !rr.res.Token.Equal(r.current):
		x := CredRotatedEvent{VaultPath: rr.res.Path, KVVersion: rr.res.Version, VersionBefore: r.version,
			Fingerprint: rr.res.Token.Fingerprint(), EnvFile: r.cfg.EnvFile, Policy: r.policyNote()}
		if _, err := creds.WriteEnvFile(r.cfg.EnvFile, rr.res.Token); err != nil {
			ev.emit(EnvFileFailedEvent{EnvFile: r.cfg.EnvFile, Err: err})
		}
		r.current, r.version = rr.res.Token, rr.res.Version
		ev.emit(x)
		r.pending = r.cfg.Rotation.Restart != supervise.RestartNever
	case rr.res.Outcome.OptOut() && !r.current.IsZero() && gone == creds.Unknown:
		// Seen once: ask again after a pause before anything changes.
		r.gone = rr.res.Outcome
		r.arm(time.Now().Add(r.confirmAfter))
	case rr.res.Outcome.OptOut() && !r.current.IsZero():
		if removed, err := creds.RemoveEnvFile(r.cfg.EnvFile); err != nil {
			ev.emit(EnvFileFailedEvent{EnvFile: r.cfg.EnvFile, Err: err})
		} else if removed {
			ev.emit(EnvFileRemovedEvent{EnvFile: r.cfg.EnvFile, Running: true})
		}
		r.current, r.version = creds.Secret{}, rr.res.Version
		ev.emit(CredOptOutEvent{TokenInfo: TokenInfo{VaultPath: rr.res.Path}, Outcome: rr.res.Outcome.String(),
			FirstSaid: gone.String(), Policy: r.policyNote()})
		r.pending = r.cfg.Rotation.Restart != supervise.RestartNever
	case gone != creds.Unknown:
		// The second read found the token again: Vault said two different things.
		r.failures++
		ev.emit(RefreshFailedEvent{VaultPath: rr.res.Path, Gone: gone.String(), After: r.confirmAfter,
			Then: rr.res.Outcome.String(), EnvFile: r.cfg.EnvFile})
	}
}

func (r *rotation) policyNote() string {
	switch r.cfg.Rotation.Restart {
	case supervise.RestartAlways:
		return "restarting t3 now (--restart-on-rotation=always)"
	case supervise.RestartWhenIdle:
		return fmt.Sprintf("t3 restarts once the agents have been idle for %v (--restart-on-rotation=when-idle)", r.cfg.Rotation.Idle)
	}
	return "t3 keeps the old token until it restarts (--restart-on-rotation=never)"
}

// restartDue says whether a pending change should restart t3 now, given the agents' activity
// as last judged (cgroup.Judge); the policy is supervise.DecideRestart. The idle gate is fed only
// while a change is pending: a rotation's idle time counts from the change (an upgrade's, fed
// from the start of the run, does not), and young leaves hold the restart back.
func (r *rotation) restartDue(now time.Time, act cgroup.Verdict) bool {
	in := supervise.RestartInput{Policy: r.cfg.Rotation.Restart, Changed: r.pending}
	if r.pending {
		in.Idle = r.idleGate.Idle(now, act)
	}
	return supervise.DecideRestart(in) == supervise.RestartNow
}
