//go:build linux

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"t3-supervise/internal/testenv"
	"t3-supervise/internal/vaulttest"
)

// TestFleetSmoke runs the benchmark small (--smoke: 5 supervisors, a 10 s outage) so that it
// cannot rot unnoticed: real processes, real users, the real Vault stopped, restarted sealed
// and unsealed, every request counted.
func TestFleetSmoke(t *testing.T) {
	testenv.NeedRoot(t)
	vaultBin, missing := vaulttest.Bin()
	testenv.Need(t, testenv.Vault, missing)
	// The smoke run's 5 s refresh interval is below the operator's floor: a supervisor built with
	// the test knob (a linker -X of a variable that does not exist is a no-op).
	sup := build(t, "t3-supervise", "./cmd/t3-supervise", "-ldflags", "-X main.refreshFloor=1s")
	standin := os.Getenv("T3S_STANDIN")
	if standin == "" {
		standin = build(t, "standin", "./test/standin")
	}
	o := smokeOptions(sup, standin).withDefaults()
	r, err := run(context.Background(), t, vaultBin, o)
	if r != nil {
		var out strings.Builder
		r.print(&out)
		t.Logf("\n%s", out.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := r.verdict(); err != nil {
		t.Fatal(err)
	}
	cold, down, recovery := r.phases[0], r.phases[2], r.recovery
	if cold.byKind[lookupSelf] != o.N || cold.byKind[kvRead] < o.N || cold.failed != 0 {
		t.Errorf("cold start: %d lookup-self, %d KV reads, %d failed for %d supervisors", cold.byKind[lookupSelf], cold.byKind[kvRead], cold.failed, o.N)
	}
	if down.total() == 0 || down.failed != down.total() {
		t.Errorf("Vault down: %d requests, %d failed", down.total(), down.failed)
	}
	for i, at := range r.out.firstRead {
		if at < r.out.unsealed {
			t.Errorf("member %d: first read after the restart at %v, before the unseal at %v", i, at, r.out.unsealed)
		}
	}
	// Every supervisor re-read in the outage (two intervals long), failed, reported it once,
	// and recovered.
	if recovery.byKind[kvRead] < o.N || r.chk.failedEvents != o.N || r.chk.maxFailedEvents != 1 || r.chk.recovered != o.N {
		t.Errorf("recovery: %d KV reads; %d failure events (at most %d per supervisor), %d recovered",
			recovery.byKind[kvRead], r.chk.failedEvents, r.chk.maxFailedEvents, r.chk.recovered)
	}
	if r.sup.n != o.N || r.sup.rss == 0 {
		t.Errorf("footprint of %d supervisors measured", r.sup.n)
	}
}

// A run that lost a supervisor, a token or an env file fails, and says which.
func TestVerdict(t *testing.T) {
	ok := result{o: options{N: 3}, chk: checks{alive: 3, sameT3: 3, tokenOK: 3, envOK: 3}, stopCodes: map[int]int{0: 3}}
	if err := ok.verdict(); err != nil {
		t.Fatalf("a clean run: %v", err)
	}
	for name, c := range map[string]struct {
		mutate func(*result)
		want   string
	}{
		"exited":       {func(r *result) { r.chk.alive, r.chk.died = 2, []string{"u1: exit status 69"} }, "exit status 69"},
		"restarted t3": {func(r *result) { r.chk.sameT3 = 2 }, "restarted"},
		"no token":     {func(r *result) { r.chk.tokenOK = 0 }, "without its token"},
		"env file":     {func(r *result) { r.chk.envOK = 2 }, "env files"},
		"stop code":    {func(r *result) { r.stopCodes = map[int]int{0: 2, 75: 1} }, "75 ×1"},
		"orphan":       {func(r *result) { r.orphans = 1 }, "outlived"},
	} {
		r := ok
		r.chk, r.stopCodes = ok.chk, map[int]int{0: 3}
		c.mutate(&r)
		if err := r.verdict(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", name, err, c.want)
		}
	}
}

// build builds pkg of this module into a temporary directory.
func build(t *testing.T, name, pkg string, flags ...string) string {
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", append(append([]string{"build"}, flags...), "-o", out, pkg)...)
	cmd.Dir = "../.."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}
