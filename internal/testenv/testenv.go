// Package testenv decides whether a test that needs a real part of the world (a Vault server, a
// systemd-journald, root, a cgroup v2 hierarchy, the real Claude Code CLI and Agent SDK) may run
// here.
//
// A tier that the caller asked for and that is missing fails the test: CI sets T3S_REQUIRE, so a
// tier cannot pass by silently skipping. A tier nobody asked for is skipped with a loud reason,
// which keeps `go test ./...` usable on a laptop.
//
//	T3S_REQUIRE=vault,journald,root,claude   tiers that must run (the Makefile's test targets set this)
//	                                          (also cgroup2, node)
//	T3S_REQUIRE=all                           every tier
package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Tier names a kind of real dependency a test needs.
type Tier string

// The tiers the test suite knows.
const (
	Vault    Tier = "vault"    // a real Vault server binary (T3S_VAULT_BIN)
	Journald Tier = "journald" // a running systemd-journald reachable at /run/systemd/journal/socket
	Root     Tier = "root"     // uid 0, to change users and write system files
	Cgroup2  Tier = "cgroup2"  // a writable cgroup v2 hierarchy (the plumbing, not memory)
	Claude   Tier = "claude"   // the real Claude Code CLI and the Agent SDK on Node (T3S_CLAUDE_BIN, T3S_SDK_DIR)
	Groff    Tier = "groff"    // groff, which renders the man page (Debian's groff-base)
	Node     Tier = "node"     // a node binary on PATH, to run a real Node process as t3
)

// Requested reports whether T3S_REQUIRE asks for tier.
func Requested(tier Tier) bool {
	for _, s := range strings.Split(os.Getenv("T3S_REQUIRE"), ",") {
		s = strings.TrimSpace(s)
		if s == string(tier) || s == "all" {
			return true
		}
	}
	return false
}

// Need fails t when tier was requested but is unavailable (missing says why), and skips it with
// the same reason when the tier was not requested. It returns normally when missing is "".
func Need(t testing.TB, tier Tier, missing string) {
	t.Helper()
	if missing == "" {
		return
	}
	if Requested(tier) {
		t.Fatalf("tier %q was requested (T3S_REQUIRE) but cannot run: %s", tier, missing)
	}
	t.Skipf("SKIP tier %q not requested and not available: %s (set T3S_REQUIRE=%s to make this a failure)", tier, missing, tier)
}

// NeedRoot is Need for the root tier.
func NeedRoot(t testing.TB) {
	t.Helper()
	missing := ""
	if os.Geteuid() != 0 {
		missing = "not running as root"
	}
	Need(t, Root, missing)
}

// NeedNode is Need for the node tier; it returns the path of node.
func NeedNode(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("node")
	missing := ""
	if err != nil {
		missing = "no node on PATH (Debian: apt-get install nodejs)"
	}
	Need(t, Node, missing)
	return path
}
