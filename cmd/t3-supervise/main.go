//go:build linux

// Command t3-supervise runs `t3 serve` for one user, in place of it, under systemd
// (t3-supervise@USER.service). It resolves the user's own long-lived Claude token from Vault and
// hands it to t3 as CLAUDE_CODE_OAUTH_TOKEN, starts t3 with an allowlisted environment, stays
// its parent, stops it politely and then by force, and reports every step to journald.
//
// `t3-supervise --help` is the operator's manual: every flag, every environment variable it
// reads, every exit code.
//
// Add an event in events.go (a type with its fields and message, a row in eventTable) and in
// units/t3-supervise.catalog, then `go test ./cmd/t3-supervise -run Catalog -update` writes
// docs/events.md; the tests fail until all three agree.
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
