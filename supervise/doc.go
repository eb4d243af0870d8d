// Package supervise runs one child process — `t3 serve` — for its whole life: it starts it with an
// environment built from an allowlist, optionally straight inside a cgroup, ties its life to the
// supervisor's (PR_SET_PDEATHSIG), stops it politely and then by force, and reports how it ended.
//
// The rules it keeps, and where they come from:
//
//   - Exactly one goroutine calls Wait on the child and publishes the result (consul-template
//     #1372: two goroutines calling Wait raced). Everything else reads Child.Done.
//   - Signals are subscribed by an explicit list, on separate channels for "stop" and "reload",
//     so that a storm of SIGHUPs can never crowd out a SIGTERM (consul-template #1548 lost a
//     SIGTERM to a 1-slot channel flooded by the runtime's own SIGURG).
//   - The environment is never inherited wholesale: exec.Cmd with a nil Env would hand the child
//     VAULT_TOKEN, NOTIFY_SOCKET and CREDENTIALS_DIRECTORY. BuildEnv starts from nothing.
//   - Stop is "SIGTERM, a grace period, then SIGKILL to everything the child spawned". With a
//     cgroup, "everything" is the cgroup (cgroup.kill, which also catches grandchildren that called
//     setsid). Without one, the supervisor makes itself a child subreaper (prctl(2)
//     PR_SET_CHILD_SUBREAPER) so that orphaned descendants are re-parented to it instead of to
//     PID 1, and kills its whole process tree.
//   - The exit status follows tini: the child's own code, or 128+n when signal n killed it;
//     126/127 when it could not be executed or found.
//
// When t3 is restarted for a change it takes up only at its start (--restart-on-rotation) is
// restart.go: RestartPolicy and the pure DecideRestart.
package supervise
