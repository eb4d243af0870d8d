//go:build linux

package main

import (
	"syscall"

	"t3-supervise/supervise"
)

// Exit codes. The supervisor's own failures use sysexits(3) numbers so that
// RestartPreventExitStatus= in the unit can stop systemd from restarting into a failure that a
// restart cannot fix. systemd applies that list to every exit of the main process, a child's
// code passed through included (systemd.service(5), RestartPreventExitStatus=), so t3's own
// codes in 64-78 are never passed on: they would read as one of these classes, and 65, 71, 77
// or 78 would keep the unit down for good.
const (
	exitOK              = 0
	exitUsage           = 64 // EX_USAGE: bad flags or arguments
	exitCredInvalid     = 65 // EX_DATAERR: the token in Vault is malformed, and there is no fallback
	exitCredUnavailable = 69 // EX_UNAVAILABLE: Vault unreachable, sealed, slow or failing, and no fallback
	exitInternal        = 70 // EX_SOFTWARE: a bug; please report it
	exitCgroup          = 71 // EX_OSERR: the cgroup subtree cannot be set up (not v2, not delegated, ...)
	exitUpgrade         = 73 // the binary was replaced (or a reload asked) and the user was idle: restart onto it
	exitT3Exited        = 74 // t3 exited unasked with 0 or a code in 64-78; its own code is in child_exited
	exitUnresponsive    = 75 // EX_TEMPFAIL: the server stopped answering and was stopped; restart it
	exitRotated         = 76 // the token changed and --restart-on-rotation asked for a restart
	exitCredDenied      = 77 // EX_NOPERM: Vault refused (permission denied, login failed, foreign token)
	exitConfig          = 78 // EX_CONFIG: invalid configuration (T3_PORT empty, bad template, no Vault auth, ...)
	exitNotExecutable   = supervise.ExitNotExecutable
	exitNotFound        = supervise.ExitNotFound
)

// exitStatusFor is the supervisor's exit code for the end of t3. requested says whether the
// supervisor stopped it (a stop signal to the supervisor); otherwise t3 ended on its own, or was
// killed from outside: earlyoom sends SIGTERM to the largest `node`, and T3 under Effect's
// NodeRuntime.runMain answers that with a clean exit 0. An exit the supervisor did not ask for
// is a crash for systemd to recover from, so it never becomes 0.
func exitStatusFor(e supervise.Exit, requested bool) int {
	if requested && (e.Signal == syscall.SIGTERM || e.Signal == syscall.SIGKILL || (e.Signal == 0 && e.Code == 0)) {
		// systemd asked for it (systemctl stop sends SIGTERM to the main process): a clean
		// stop, or the unit would be marked failed on every stop.
		return exitOK
	}
	s := e.Status()
	if s == exitOK || (s >= exitUsage && s <= exitConfig) {
		return exitT3Exited
	}
	return s
}

// exitCodeHelp is the EXIT STATUS section of --help; TestExitStatusHelpIsTrue checks every line
// against the constants above and exitStatusFor.
const exitCodeHelp = `EXIT STATUS
  0        a requested stop (SIGTERM, SIGINT, SIGQUIT) ended t3 cleanly, or came before t3 started;
           never when t3 exited or was killed without being asked to
  1-63     t3 exited on its own with this code
  64       usage: bad flags or arguments
  65       credential: the setup_token in Vault is malformed and no earlier token is materialized
  69       credential: Vault unreachable, sealed, slow or failing, and no earlier token is materialized
  70       internal error
  71       cgroup: the cgroup v2 subtree cannot be set up (see the message: Delegate=yes, ...)
  73       upgrade: the t3-supervise binary was replaced (a package upgrade) or systemctl reload
           asked, and the agents had been idle for --rotation-idle: t3 was stopped for systemd
           to start the unit again on the installed binary (the unit counts it a success)
  74       t3 exited without being asked to, with 0 or a code in 64-78 (which would read as
           success or as one of the codes here); its own code is in the child_exited event
  75       the server stopped answering and was stopped (systemd should restart the unit)
  76       the token in Vault changed and --restart-on-rotation stopped t3 for systemd to restart it
  77       credential: Vault denied access (permission, login, foreign token) and no earlier token
  78       configuration: invalid settings (empty T3_PORT, path template without {user}, no Vault
           auth, WatchdogSec= without a port to probe)
  79-125   t3 exited on its own with this code
  126      the t3 binary exists but cannot be executed
  127      the t3 binary was not found
  128+n    t3 was killed by signal n (for example 137 = SIGKILL, 143 = SIGTERM)
  With the unit's Restart=always and RestartPreventExitStatus=64 65 71 77 78, systemd restarts
  the unit after every exit but those five, and never after a stop it was asked for
  (systemctl stop).
`
