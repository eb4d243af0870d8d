package creds

import (
	"errors"
	"fmt"
	"io/fs"
)

// Action is what happens to the env file.
type Action string

// Env file actions.
const (
	ActionWrite     Action = "write"     // a new or changed token: write it atomically
	ActionUnchanged Action = "unchanged" // the file already holds this token
	ActionRemove    Action = "remove"    // a confirmed opt-out: remove the stale token
	ActionKeep      Action = "keep"      // Vault failed: the file is the fallback, leave it alone
	ActionNone      Action = "none"      // nothing there, nothing to do
)

// Decision is what a run does with a resolution: what to inject, from where, and what happens
// to the env file. It is computed without I/O, so --dry-run and the real run share it.
type Decision struct {
	Inject   Secret // zero: t3 starts on the normal credential flow
	From     string // "vault", "env-file (fallback)" or "none"
	EnvFile  Action
	Outcome  Outcome
	Fallback error // the Vault error the fallback covers, for the warning event
}

// Decide turns a resolution (res, resolveErr) and the materialized token (cached, cachedErr
// from ReadEnvFile) into a Decision.
//
// A confirmed answer from Vault is followed: Found injects and (re)writes the file; the
// opt-outs inject nothing and remove the file. A failure — denied, unavailable, malformed —
// never deletes anything: it falls back to the materialized token when there is a valid one,
// with Fallback set for a warning, and is returned as the error otherwise. ErrConfig is the
// operator's mistake and is never papered over by a fallback: a unit that cannot work must say
// so at its first start, not after the cached token expires a year later.
func Decide(res Result, resolveErr error, cached Secret, cachedErr error) (Decision, error) {
	haveCache := cachedErr == nil && !cached.IsZero()
	if resolveErr != nil {
		if errors.Is(resolveErr, ErrConfig) || !haveCache {
			return Decision{Outcome: res.Outcome}, resolveErr
		}
		return Decision{Inject: cached, From: "env-file (fallback)", EnvFile: ActionKeep, Outcome: res.Outcome, Fallback: resolveErr}, nil
	}
	switch {
	case res.Outcome == Found:
		if res.Token.IsZero() {
			return Decision{}, fmt.Errorf("%w: found without a token", ErrMalformed)
		}
		act := ActionWrite
		if haveCache && cached.Equal(res.Token) {
			act = ActionUnchanged
		}
		return Decision{Inject: res.Token, From: "vault", EnvFile: act, Outcome: Found}, nil
	case res.Outcome.OptOut():
		act := ActionNone
		// A file that exists but is unreadable or garbage is stale all the same.
		if cachedErr == nil || !errors.Is(cachedErr, fs.ErrNotExist) {
			act = ActionRemove
		}
		return Decision{From: "none", EnvFile: act, Outcome: res.Outcome}, nil
	}
	return Decision{}, fmt.Errorf("%w: no outcome and no error", ErrUnavailable)
}
