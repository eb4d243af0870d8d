//go:build linux

package main

import (
	"fmt"
	"path/filepath"
	"time"

	"t3-supervise/creds"
)

// expiryWatch follows the expiry of the user's token in Vault (the one the env file holds and
// the next start of t3 uses) while the supervisor runs: it reports what creds.CheckExpiry says
// is due, at start and whenever a timer set by creds.NextExpiryCheck fires, keeps the note for
// STATUS=, and keeps credential.json in the runtime directory for `status`. The policy is in
// creds; this is its clock, its timer and its reports.
type expiryWatch struct {
	now       func() time.Time
	path      string // the Vault path, for the events
	exp       creds.Expiry
	token     string // fingerprint of the token exp belongs to
	version   int
	source    string               // the token's origin (creds.From*)
	done      creds.ExpiryReported // what was reported for (token, exp)
	invalid   string               // the last credential_expiry_invalid message (once per message)
	timer     *time.Timer
	wait      time.Duration // what timer was last armed for; -1: not armed
	statePath string        // "" without a runtime directory
}

// maxExpiryWait bounds the timer: Go's timers run on CLOCK_MONOTONIC, which stands still while
// the machine is suspended and does not follow a stepped wall clock (clock_gettime(2)); the
// expiry is a wall-clock instant, so the policy is asked again at least this often.
const maxExpiryWait = time.Hour

// credentialFile is where the supervisor keeps credentialState in its runtime directory.
const credentialFile = "credential.json"

// credentialState is what the supervisor knows about the user's token, for `status` (kept in
// credentialFile, read back by status). Stable: fields are only added. No token, no fingerprint.
type credentialState struct {
	// TokenSource is where t3's token came from: vault, "env-file (fallback)", none.
	TokenSource string `json:"token_source"`
	// KVVersion is the KV version of the user's secret last read (0: none).
	KVVersion int `json:"kv_version"`
	// TokenExpiresAt is when the token in Vault is expected to stop working, RFC 3339 in UTC;
	// null when unknown (no token, a fallback start before Vault answered, nothing to go by).
	TokenExpiresAt *time.Time `json:"token_expires_at"`
	// TokenExpirySource says how TokenExpiresAt is known: custom_metadata (the secret's
	// custom_metadata.expires_at), created_time (the version's created_time + --token-lifetime),
	// "" when unknown.
	TokenExpirySource string `json:"token_expiry_source"`
}

func newExpiryWatch(cfg *config, p *plan) *expiryWatch {
	w := &expiryWatch{now: cfg.now, path: p.Credential.Path, exp: p.expiry, token: p.decision.Inject.Fingerprint(),
		version: p.Credential.Version, source: p.decision.From, invalid: p.expiryProblem}
	if cfg.RuntimeDir != "" {
		w.statePath = filepath.Join(cfg.RuntimeDir, credentialFile)
	}
	w.timer = time.NewTimer(time.Hour)
	w.timer.Stop()
	return w
}

// C fires when the policy is to be asked again.
func (w *expiryWatch) C() <-chan time.Time { return w.timer.C }

// state is what status shows.
func (w *expiryWatch) state() credentialState {
	st := credentialState{TokenSource: w.source, KVVersion: w.version, TokenExpirySource: string(w.exp.Source)}
	if w.exp.Known() {
		at := w.exp.At
		st.TokenExpiresAt = &at
	}
	return st
}

// save writes credentialFile; losing it loses only status's view, so errors are ignored.
func (w *expiryWatch) save() {
	if w.statePath != "" {
		_ = writeFileAtomic(w.statePath, w.state())
	}
}

// follow takes a re-read's result after rotation.handle, with current the token now in use
// (rotation.current): a read that found that token brings its expiry (maybe new: custom
// metadata changed, a new version); a confirmed opt-out ends it; a failed read, or an answer
// waiting for confirmation, changes nothing.
func (w *expiryWatch) follow(ev *events, rr refreshResult, current creds.Secret, lifetime time.Duration) {
	if rr.err != nil {
		return
	}
	switch {
	case current.IsZero():
		w.set(creds.Expiry{}, current.Fingerprint(), rr.res.Version, creds.FromNone)
	case rr.res.Outcome == creds.Found && rr.res.Token.Equal(current):
		exp, err := creds.TokenExpiry(rr.res, lifetime)
		w.reportInvalid(ev, err, rr.res.Version)
		w.set(exp, current.Fingerprint(), rr.res.Version, creds.FromVault)
	default:
		return
	}
	w.check(ev)
}

// reportInvalid reports an unusable expires_at (or none to go by) once per distinct problem:
// every hourly re-read would repeat it otherwise.
func (w *expiryWatch) reportInvalid(ev *events, err error, version int) {
	if err == nil {
		w.invalid = ""
		return
	}
	if err.Error() == w.invalid {
		return
	}
	w.invalid = err.Error()
	emitExpiryInvalid(ev, w.path, version, err)
}

func emitExpiryInvalid(ev *events, path string, version int, err error) {
	ev.emit(CredExpiryInvalidEvent{VaultPath: path, KVVersion: version, Err: err})
}

// set replaces the expiry. Another token or another instant starts the notices afresh (one
// notice for the innermost threshold already crossed, as at a start): a changed expiry is news.
func (w *expiryWatch) set(exp creds.Expiry, token string, version int, source string) {
	if token != w.token || !exp.At.Equal(w.exp.At) {
		w.done = 0
	}
	changed := token != w.token || exp != w.exp || version != w.version || source != w.source
	w.exp, w.token, w.version, w.source = exp, token, version, source
	if changed {
		w.save()
	}
}

// check reports what is due now and arms the timer for the next look.
func (w *expiryWatch) check(ev *events) {
	w.timer.Stop()
	w.wait = -1
	if !w.exp.Known() {
		return
	}
	now := w.now()
	n, done := creds.CheckExpiry(now, w.exp.At, w.done)
	w.done = done
	if n.Due() {
		x := ExpiryInfo{VaultPath: w.path, ExpiresAt: w.exp.At, Source: string(w.exp.Source),
			DaysLeft: creds.DaysLeft(n.Left), Fingerprint: w.token, KVVersion: w.version, Left: n.Left}
		if n.Expired {
			ev.emit(CredExpiredEvent{x})
		} else {
			ev.emit(CredExpiringEvent{x, int(n.Threshold / (24 * time.Hour))})
		}
	}
	if next, ok := creds.NextExpiryCheck(now, w.exp.At, w.done); ok {
		w.wait = min(max(next.Sub(now), 0), maxExpiryWait)
		w.timer.Reset(w.wait)
	}
}

// note is the expiry's part of STATUS=: days left inside the outermost threshold, EXPIRED
// after; nothing before (a year of "expires in 300 days" is noise).
func (w *expiryWatch) note() string {
	if !w.exp.Known() {
		return ""
	}
	l := w.exp.At.Sub(w.now())
	switch {
	case l <= 0:
		return fmt.Sprintf("token EXPIRED %s", ago(-l))
	case l <= creds.ExpiryThresholds[0]:
		return fmt.Sprintf("token expires in %s (%s)", left(l), w.exp.At.Format(time.DateOnly))
	}
	return ""
}

// left says a time left in days, or in hours inside the last day.
func left(d time.Duration) string {
	if d < 24*time.Hour {
		h := int(d / time.Hour)
		if h == 1 {
			return "1 hour"
		}
		if h == 0 {
			return "less than an hour"
		}
		return fmt.Sprintf("%d hours", h)
	}
	n := creds.DaysLeft(d)
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

func ago(d time.Duration) string {
	if d < 24*time.Hour {
		return "today"
	}
	n := int(d / (24 * time.Hour))
	if n == 1 {
		return "1 day ago"
	}
	return fmt.Sprintf("%d days ago", n)
}

// readCredentialState reads credentialFile from the unit's runtime directory for `status`
// (readRuntimeJSON); an absent or unusable file is an unknown state (every field empty), never
// an error: status must answer for a unit whose supervisor predates the file.
func readCredentialState(dir string, uid int) credentialState {
	var st credentialState
	if readRuntimeJSON(dir, credentialFile, uid, &st) != nil {
		return credentialState{}
	}
	return st
}
