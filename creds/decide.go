package creds

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Action is what happens to the env file.
type Action string

// Env file actions.
const (
	ActionWrite     Action = "write"     // a new or changed token: write it atomically
	ActionUnchanged Action = "unchanged" // the file already holds this token: no write at all
	ActionRemove    Action = "remove"    // a confirmed opt-out: remove the stale token
	ActionKeep      Action = "keep"      // Vault failed: the file is the fallback, leave it alone
	ActionNone      Action = "none"      // no file, nothing to do
	ActionRefuse    Action = "refuse"    // write or remove, but the file or its directory is unsafe (FilePlan.Refusal)
)

// Token origins in Decision.From (the event field T3_TOKEN_SOURCE).
const (
	FromVault    = "vault"
	FromFallback = "env-file (fallback)"
	FromNone     = "none"
)

// Decision is what a run does with a resolution: what to inject, from where, and what happens to
// the env file. It is computed without I/O, so that --dry-run prints exactly what a real run
// does.
type Decision struct {
	Inject   Secret  // the token for CLAUDE_CODE_OAUTH_TOKEN; zero: t3 starts on the normal credential flow
	From     string  // FromVault, FromFallback or FromNone
	EnvFile  Action  // what to do with the env file
	Outcome  Outcome // Vault's answer (Unknown after a failure)
	Fallback error   // the Vault error the fallback covers, for the warning event; nil otherwise
}

// Decide turns a resolution (res, resolveErr from New or Resolve) and the materialized token
// (cached, cachedErr from ReadEnvFile) into a Decision:
//
//   - Found: inject the token; EnvFile is ActionUnchanged when the file holds the same token,
//     else ActionWrite (a garbage or unreadable file is overwritten).
//   - NoSecret, NoField, Deleted, Destroyed: inject nothing; ActionRemove when there is a file
//     (valid or not: it is stale either way), else ActionNone.
//   - ErrDenied, ErrUnavailable, ErrMalformed, or any other error: with a valid cached token,
//     inject it, ActionKeep, Fallback set; a failure never deletes anything, because the old sync
//     script's turning of a transient error into an opt-out is what logged users out. Without a
//     valid cached token, the error is returned (its class picks the exit code).
//   - ErrConfig: returned even when a cached token exists. A unit that cannot work (no auth, a
//     template without {user}, a KV v1 mount) must say so at its first start, not once the
//     cached token expires a year later.
func Decide(res Result, resolveErr error, cached Secret, cachedErr error) (Decision, error) {
	haveCache := cachedErr == nil && !cached.IsZero()
	if resolveErr != nil {
		if errors.Is(resolveErr, ErrConfig) || !haveCache {
			return Decision{From: FromNone, Outcome: res.Outcome}, resolveErr
		}
		return Decision{Inject: cached, From: FromFallback, EnvFile: ActionKeep, Outcome: res.Outcome, Fallback: resolveErr}, nil
	}
	switch {
	case res.Outcome == Found:
		if err := ValidateToken(res.Token.Reveal()); err != nil {
			return Decision{From: FromNone, Outcome: res.Outcome}, fmt.Errorf("%s: %w", res.Path, err)
		}
		act := ActionWrite
		if haveCache && cached.Equal(res.Token) {
			act = ActionUnchanged
		}
		return Decision{Inject: res.Token, From: FromVault, EnvFile: act, Outcome: Found}, nil
	case res.Outcome.OptOut():
		act := ActionRemove
		if errors.Is(cachedErr, fs.ErrNotExist) {
			act = ActionNone
		}
		return Decision{From: FromNone, EnvFile: act, Outcome: res.Outcome}, nil
	}
	return Decision{From: FromNone}, fmt.Errorf("%w: %s: no outcome and no error", ErrUnavailable, res.Path)
}

// FilePlan is a Decision's env file action as a real run carries it out at that path: found by
// looking at the file and its directory, changing nothing, so that the dry run says what the
// real run will do (ActionRefuse where it refuses, the directories it creates).
type FilePlan struct {
	Action  Action
	Mkdir   []string // for ActionWrite: directories created first, mode 0700, outermost first
	Refusal error    // for ActionRefuse: the error the real run reports
}

// PlanEnvFile turns act, Decide's action for the env file at path, into what will be done there
// (WritePlan for a write; RemoveEnvFile refuses a directory).
func PlanEnvFile(path string, act Action) FilePlan {
	switch act {
	case ActionWrite:
		wp, err := PlanWrite(path)
		if err != nil {
			return FilePlan{Action: ActionRefuse, Refusal: err}
		}
		return FilePlan{Action: ActionWrite, Mkdir: wp.Mkdir}
	case ActionRemove:
		if st, err := os.Lstat(path); err == nil && st.IsDir() {
			return FilePlan{Action: ActionRefuse, Refusal: errRemoveDir(path)}
		}
	}
	return FilePlan{Action: act}
}
