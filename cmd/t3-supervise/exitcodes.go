//go:build linux

package main

import "t3-supervise/supervise"

// Exit codes. The child's own code passes through (and 128+n when signal n killed it); the
// supervisor's own failures use sysexits(3) numbers so that RestartPreventExitStatus= in the unit
// can stop systemd from restarting into a failure that a restart cannot fix.
const (
	exitOK              = 0
	exitUsage           = 64 // EX_USAGE: bad flags or arguments
	exitCredInvalid     = 65 // EX_DATAERR: the token in Vault is malformed, and there is no fallback
	exitCredUnavailable = 69 // EX_UNAVAILABLE: Vault unreachable, sealed, slow or failing, and no fallback
	exitInternal        = 70 // EX_SOFTWARE: a bug; please report it
	exitCgroup          = 71 // EX_OSERR: the cgroup subtree cannot be set up (not v2, not delegated, ...)
	exitUnresponsive    = 75 // EX_TEMPFAIL: the server stopped answering and was stopped; restart it
	exitRotated         = 76 // the token changed and --restart-on-rotation asked for a restart
	exitCredDenied      = 77 // EX_NOPERM: Vault refused (permission denied, login failed, foreign token)
	exitConfig          = 78 // EX_CONFIG: invalid configuration (T3_PORT empty, bad template, no Vault auth, ...)
	exitNotExecutable   = supervise.ExitNotExecutable
	exitNotFound        = supervise.ExitNotFound
)

// exitCodeHelp is the EXIT STATUS section of --help; keep it in step with the constants above.
const exitCodeHelp = `EXIT STATUS
  0        the child exited 0, or a requested stop (SIGTERM/SIGINT) ended it cleanly
  1-125    the child's own exit code, passed through
  64       usage: bad flags or arguments
  65       credential: the setup_token in Vault is malformed and no earlier token is materialized
  69       credential: Vault unreachable, sealed, slow or failing, and no earlier token is materialized
  70       internal error
  71       cgroup: the cgroup v2 subtree cannot be set up (see the message: Delegate=yes, ...)
  75       the server stopped answering and was stopped (systemd should restart the unit)
  76       the token in Vault changed and --restart-on-rotation stopped t3 for systemd to restart it
  77       credential: Vault denied access (permission, login, foreign token) and no earlier token
  78       configuration: invalid settings (empty T3_PORT, path template without {user}, no Vault auth)
  126      the t3 binary exists but cannot be executed
  127      the t3 binary was not found
  128+n    the child was killed by signal n (for example 137 = SIGKILL, 143 = SIGTERM)
`
