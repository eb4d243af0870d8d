//go:build linux

package main

import (
	"fmt"
	"io"
)

const helpHead = `t3-supervise: run "t3 serve" for one user with the user's own Claude token

USAGE
  t3-supervise [flags] [--] [t3 arguments...]     (default t3 arguments: serve)

  systemd runs it as t3-supervise@USER.service, in place of "t3 serve":
    t3-supervise --user alice -- serve --host 0.0.0.0 --port 3773 --base-dir ~alice/.t3

  It resolves the setup token of --user from Vault (KV v2, path from --vault-path-template,
  field --vault-field), writes it to --env-file for the user's other sessions, and starts t3
  with CLAUDE_CODE_OAUTH_TOKEN set. A user with no token in Vault is an opt-out: t3 starts
  unchanged on the normal credential flow and the env file is removed. Only Vault's own answers
  count as that: 404 {"errors":[]} (no secret), metadata saying the latest version is deleted
  or destroyed, a secret (with its metadata) without the field. Anything else is a failure:
  unreachable, sealed, slow, 5xx, denied, a malformed value, a moved, disabled or mistyped
  mount (404 "no handler for route"), an answer that is not KV v2's. Then it falls back to the
  token last written to --env-file, with a warning, and never deletes that file; without one
  it exits with a code that says why. It never follows a Vault redirect to another host.

  Vault auth, first that is available: --vault-token-file, VAULT_TOKEN, AppRole
  (--approle-role-id with --approle-secret-id-file). The token and secret id files are read
  by the supervisor itself, as the user, after any drop from root: regular files only, never
  through a symlink, never a FIFO, at most 16 KiB. A renewable (periodic) token is renewed
  while t3 runs, and the token is re-read every --refresh-interval and on SIGHUP. A re-read
  that finds the token gone is confirmed by a second read 5 s later before the env file is
  removed or --restart-on-rotation acts.

  A setup token carries no date and fails only inside the agents once expired, so its expiry is
  taken from Vault: the secret's custom_metadata expires_at (RFC 3339, 2027-11-30T09:15:00Z, or
  a date, 2027-11-30, meaning 00:00 UTC that day; set by an operator with vault kv metadata
  patch -custom-metadata expires_at=...), else the KV version's created_time plus
  --token-lifetime. An expires_at that does not parse, or lies before the version was written
  (left from an earlier token), is reported (credential_expiry_invalid) and not used. The
  events credential_expiring (30, 7 and 1 days before; each once per token and expiry, and at
  a start inside one only the innermost) and credential_expired (after) follow it, STATUS=
  counts the days left inside 30 days, and --dry-run and status --json show the expiry and
  where it came from (token_expires_at, token_expiry_source).

  It never runs t3 and its agents as root: started as root it drops to --user before it does
  anything else (groups, gid, uid), and without --user it refuses, as it refuses a user whose
  primary group is 0. t3 then gets the user's identity from the passwd entry: USER, LOGNAME,
  SHELL, and HOME unless HOME is set to something else than root's; XDG_RUNTIME_DIR only when
  that directory is the user's own (else /run/user/UID if it is, else none).

  It tells systemd READY=1 once t3 answers GET / on its --host (loopback when t3 listens on
  every interface) and port, WATCHDOG=1 after every answer, and STOPPING=1 when it begins to
  stop t3; with WatchdogSec= set and no port to probe it refuses to start (exit 78) rather
  than let the watchdog kill the unit.

  Upgrades never kill a busy session. When the file at the supervisor's own path is replaced
  (dpkg installs a new /usr/bin/t3-supervise by rename; the package restarts no unit), t3 and
  its agents keep running on the old binary, and the supervisor moves to the new one the next
  time its user is idle: the agents have been idle by CPU time (--busy-cpu) for
  --rotation-idle, the idle of --restart-on-rotation=when-idle. It checks the path every 5 s, waits for dpkg to finish
  configuring the package (its postinst reloads systemd, so the unit restarts on the new unit
  file too), runs the new binary's version command (a binary that cannot run is refused),
  stops t3 as for a stop and exits 73, which systemd restarts, so NRestarts counts the move. systemctl reload (SIGUSR2) asks for the
  same move, with or without a new binary; systemctl restart moves a busy unit at once and
  kills its agents. t3-supervise status shows binary_stale, running_version and
  installed_version.

  t3-supervise status [--user USER] [--json] shows a running unit's tree; see status --help.
  t3-supervise version prints the version of this binary.

FLAGS
`

const helpTail = `
ENVIRONMENT
  HOME                    the user's home; defaults of --vault-token-file and --env-file live under it
  T3_PORT                 the port of "t3 serve" when the t3 arguments carry no --port and t3 gets
                          no T3CODE_PORT; an empty --port value (T3_PORT unset in the unit's
                          EnvironmentFile) is refused
  T3CODE_PORT, T3CODE_HOST
                          t3's own variables for its port and address: when they reach t3 (through
                          --env-allow) and its arguments carry no --port or --host, t3 listens
                          there, and that is where it is probed
  CREDENTIALS_DIRECTORY   set by systemd for LoadCredential=; a vault-token in it is read first.
                          Load it only from a root-owned path: systemd reads LoadCredential= as
                          root and follows symlinks, so a path in the user's home would let the
                          user copy another user's token (the unit reads none)
  VAULT_TOKEN             Vault token, used when there is no token file
  VAULT_ADDR, VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY, VAULT_NAMESPACE,
  VAULT_SKIP_VERIFY, VAULT_TLS_SERVER_NAME, VAULT_CLIENT_TIMEOUT, VAULT_MAX_RETRIES
                          as for the Vault CLI
  CLAUDE_CODE_OAUTH_TOKEN an inherited value is never passed on unless it equals the user's own
                          token from Vault; otherwise it is dropped with a warning, whatever
                          --env-allow says
  ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN
                          Claude Code prefers either to CLAUDE_CODE_OAUTH_TOKEN: while the user's
                          token is injected they are dropped with a warning even when --env-allow
                          lets them through; for an opted-out user they pass as allowed
  NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID, JOURNAL_STREAM
                          systemd's; they tell t3-supervise how to talk to systemd and journald
  The child gets only the variables matched by --env-allow (and --env-allow-extra), plus
  CLAUDE_CODE_OAUTH_TOKEN; VAULT_*, NOTIFY_SOCKET, WATCHDOG_*, CREDENTIALS_DIRECTORY and
  LISTEN_* never reach it, whatever the allowlist says.

SIGNALS
  SIGTERM, SIGINT, SIGQUIT
                   stop: SIGTERM to t3, --stop-timeout to exit, then SIGKILL to everything it
                   spawned; exit 0 when that stop ended it
  SIGHUP           the token is re-read from Vault at once; t3 is not signalled (Node dies of
                   a SIGHUP it does not handle, and t3 has no handler)
  SIGUSR2          systemctl reload (the unit's ExecReload=): restart onto the installed binary
                   and the unit's current settings the next time the user is idle (exit 73),
                   never while agents work; t3 is not signalled
  SIGPIPE          caught: a write to a closed stdout or stderr fails instead of ending the
                   supervisor (a log pipe that went away)
  Whatever ends the supervisor, SIGKILL included, t3 gets SIGKILL from the kernel
  (PR_SET_PDEATHSIG) and does not outlive it. An end of t3 that the supervisor did not ask for
  (a crash, a SIGTERM or SIGKILL from outside, a clean exit 0) is never exit 0: see EXIT STATUS.

EVENTS
  Every step goes to journald (SYSLOG_IDENTIFIER=t3-supervise, a MESSAGE_ID per event kind,
  fields T3_EVENT, T3_USER, T3_PID, T3_TOKEN_SOURCE, T3_KV_VERSION, ...), and as lines to
  stderr when stderr is not already the journal. The token is never printed: at most its
  fingerprint (sha256:<12 hex>).
  journalctl -t t3-supervise -o verbose    shows them with their fields.

`

func printHelp(w io.Writer) {
	var c config
	var a, b []string
	var s, o string
	fmt.Fprint(w, helpHead)
	fmt.Fprint(w, flagSet(&c, &a, &b, &s, &o).FlagUsages())
	fmt.Fprint(w, helpTail)
	fmt.Fprint(w, exitCodeHelp)
}
