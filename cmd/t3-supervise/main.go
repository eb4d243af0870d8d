//go:build linux

// Command t3-supervise runs `t3 serve` for one user, in place of it, under systemd
// (t3-supervise@USER.service). It resolves the user's own long-lived Claude token from Vault and
// hands it to t3 as CLAUDE_CODE_OAUTH_TOKEN, starts t3 with an allowlisted environment, stays
// its parent, stops it politely and then by force, and reports every step to journald.
//
// `t3-supervise --help` is the operator's manual: every flag, every environment variable it
// reads, every exit code.
//
// # Where to change what
//
//   - The pressure policy (when a throttled agent is killed, which one, when SIGTERM becomes
//     SIGKILL): cgroup/pressure.go, pure and table-tested; its inputs come from the flags in
//     config.go (--memory-high, --pressure-window, --pressure-stall, --kill-grace). The mechanisms it drives are one file each in cgroup (doc.go).
//   - An event: events.go (a type with its fields and message, a row in eventTable), and its
//     entry in units/t3-supervise.catalog; `go test ./cmd/t3-supervise -run Catalog -update`
//     then writes docs/events.md. The tests fail until all three agree.
//   - A status field: statusReport in status.go (a field read from the live cgroup tree goes in
//     cgroup.Status, cgroup/status_linux.go); statusHelp beside it and docs/status.md document it.
//   - A Vault auth method: creds/client.go, authenticate (the order of methods) with a new
//     AuthSource in creds/creds.go; the flags that configure it go in config.go.
//   - The restart-on-rotation policy: supervise/restart.go; the idle judgement it is given,
//     cgroup/idlegate.go.
//   - A flag: flagSet in config.go; --help and the man page are made from it, and
//     TestHelpDocumentsEverything fails for a flag without a usage.
package main

import (
	"context"
	"os"
)

func main() {
	if self, err := os.Executable(); err == nil && isShim(os.Args[0], os.Environ(), self) {
		os.Exit(shim(os.Args, os.Environ()))
	}
	os.Exit(run(context.Background(), os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}
