//go:build linux

// Command fleet measures what many users' supervisors do to the one Vault they share: a cold
// start of all of them at once, the steady state, and Vault stopped for a while and started
// again (it comes back sealed, and is unsealed after a while, as a real server with persistent
// storage does).
//
//	go run ./bench/fleet [--supervisors 200] [--outage 60s] [--sealed 10s] [--refresh-interval 1m] [--per-second]
//	go run ./bench/fleet --smoke      # 5 supervisors, a 10 s outage: what the host tier's TestFleetSmoke runs
//
// --smoke re-reads every 5 s, below the operator's floor of --refresh-interval: it needs a
// supervisor built with the test knob, go build -ldflags "-X main.refreshFloor=1s" (the
// test builds one).
//
// Each supervisor is the real binary (make build) as its own process, started as root with
// --user: the bench creates one throwaway Unix user per supervisor (useradd, removed again at
// the end; users an interrupted run left behind are removed by the next). Real users rather
// than one user with many paths, because the supervisor re-reads at a per-user offset derived
// from the user name (creds.NewSchedule): 200 supervisors of one user would share one offset
// and make a herd that no real fleet has. Each user has its own HOME, its own Vault token in
// ~/.config/claude-auth-sync/vault-token (periodic, --token-period, 32 days as in production),
// its own policy workstation-claude-USER allowing only its own path, and its own fake setup
// token at secret/workstation/claude-users/USER. Each supervisor runs the stand-in t3
// (bin/standin, make tools) on its own port, with --no-cgroup (this host has no delegated
// cgroup v2).
//
// Vault is a real Vault 1.19.0 (test/vault/build) with file storage, so that tokens, policies
// and secrets survive the stop; it is killed (SIGKILL: a crash, or a host going away), started
// again after --outage, answers sealed (503) for --sealed, and is then unsealed. Every request
// of every supervisor goes through a counting reverse proxy in front of it, which records each
// request's arrival, path (lookup-self, sys/internal/ui/mounts, the KV read, renew-self) and
// answer; while Vault is down the proxy answers 502.
//
// It prints, as Markdown: requests by path and per second for each phase (cold start, steady
// state, Vault down, sealed, recovery, steady state after the recovery), each phase's peak
// 1 s bucket against the steady state's; when every supervisor had read its secret again and
// the histogram of those first reads; the end state of every supervisor (alive, t3 still the
// same process with its user's token, the env file intact, the events it logged, its exit code
// at the final SIGTERM); and the supervisors' own footprint. It exits 1 when a supervisor ended
// on its own, lost its token or never read its secret again.
//
// It needs root, and takes about 6 minutes with the defaults (a cold start, two refresh intervals
// of steady state, the outage, the recovery, one more interval). On a machine shared with other
// test runs, serialize it with them (flock(1)): they distort its figures, and it theirs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"t3-supervise/bench/internal/benchutil"
	"t3-supervise/internal/vaulttest"
)

func main() {
	o := options{}
	flag.IntVar(&o.N, "supervisors", 200, "how many supervisors (and users)")
	flag.DurationVar(&o.Outage, "outage", time.Minute, "how long Vault is stopped")
	flag.DurationVar(&o.Sealed, "sealed", 10*time.Second, "how long Vault answers sealed after it started again, before it is unsealed")
	flag.DurationVar(&o.Interval, "refresh-interval", time.Minute, "the supervisors' --refresh-interval")
	flag.DurationVar(&o.Steady, "steady", 0, "steady state measured before the outage (default: two refresh intervals)")
	flag.DurationVar(&o.After, "after", 0, "steady state measured after the recovery (default: one refresh interval)")
	flag.DurationVar(&o.TokenPeriod, "token-period", 768*time.Hour, "period of each user's Vault token (production: 32 days)")
	flag.DurationVar(&o.VaultTimeout, "vault-timeout", 10*time.Second, "the supervisors' --vault-timeout")
	flag.StringVar(&o.Supervisor, "supervisor", "bin/t3-supervise", "the t3-supervise binary")
	flag.StringVar(&o.Standin, "standin", "bin/standin", "the stand-in t3 binary")
	flag.BoolVar(&o.PerSecond, "per-second", false, "also print every second of the outage and recovery, by path")
	smoke := flag.Bool("smoke", false, "a small run: 5 supervisors, 5 s refresh interval, 10 s outage, 1 s sealed (other settings ignored)")
	flag.Parse()
	log.SetFlags(0)
	if *smoke {
		o = smokeOptions(o.Supervisor, o.Standin)
	}
	for _, p := range []*string{&o.Supervisor, &o.Standin} {
		*p, _ = filepath.Abs(*p)
	}
	o = o.withDefaults()
	vaultBin, err := benchutil.VaultBin()
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t := benchutil.NewT()
	r, err := run(ctx, t, vaultBin, o)
	t.Close()
	if r != nil {
		r.print(os.Stdout)
	}
	if err == nil {
		err = r.verdict()
	}
	if err != nil {
		log.Fatal(err)
	}
}

// smokeOptions is the small run the host tier makes (TestFleetSmoke) so that the program
// cannot rot unnoticed. The outage is two intervals long: every supervisor re-reads during it
// and fails, the Vault client's retries included.
func smokeOptions(supervisor, standin string) options {
	return options{N: 5, Outage: 10 * time.Second, Sealed: time.Second, Interval: 5 * time.Second,
		Steady: 5 * time.Second, After: 5 * time.Second, TokenPeriod: 768 * time.Hour,
		VaultTimeout: 10 * time.Second, Supervisor: supervisor, Standin: standin}
}

func (o options) withDefaults() options {
	if o.Steady == 0 {
		o.Steady = 2 * o.Interval
	}
	if o.After == 0 {
		o.After = o.Interval
	}
	return o
}

// run is the whole measurement. With an error it still returns what it measured so far
// when there is something to print.
func run(ctx context.Context, t vaulttest.T, vaultBin string, o options) (*result, error) {
	if o.N < 1 || o.Interval <= 0 || o.Outage <= 0 || o.Sealed < 0 {
		return nil, errors.New("want --supervisors >= 1, a positive --refresh-interval and --outage, a --sealed >= 0")
	}
	t.Logf("setting up %d users, their Vault paths, tokens and policies", o.N)
	f, err := newFleet(t, vaultBin, o)
	if err != nil {
		return nil, err
	}
	r := &result{o: o, journal: journal.Enabled()}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			f.stopAll(30 * time.Second)
		}
	})

	t.Logf("cold start: %d supervisors at once", o.N)
	from := f.proxy.since()
	r.launched, r.coldReady, err = f.coldStart(ctx, 3*time.Minute)
	if err != nil {
		return nil, err
	}
	for _, at := range f.proxy.firstRead(from, o.N) {
		r.coldRead = max(r.coldRead, at)
	}
	cpu0 := measure(f.supervisorPids()).cpu
	t.Logf("steady state for %v", o.Steady)
	if err := sleep(ctx, r.coldReady+o.Steady-f.proxy.since()); err != nil {
		return nil, err
	}
	r.sup, r.t3 = measure(f.supervisorPids()), measure(f.t3Pids())
	r.supCPU = (r.sup.cpu - cpu0) / o.Steady.Seconds()

	t.Logf("Vault down for %v, then sealed for %v", o.Outage, o.Sealed)
	// A supervisor that failed retries within the backoff's cap (the refresh interval, at least
	// 15 s), one that did not re-reads within an interval; each attempt takes up to the timeout.
	limit := max(o.Interval, 15*time.Second) + o.VaultTimeout + 30*time.Second
	r.out, err = f.outage(ctx, limit)
	recovered := err == nil
	if err != nil && ctx.Err() != nil {
		return nil, err
	}
	if recovered {
		t.Logf("every supervisor re-read %.1f s after the unseal; steady state for %v", (r.out.allRead - r.out.unsealed).Seconds(), o.After)
		if err := sleep(ctx, r.out.allRead+o.After-f.proxy.since()); err != nil {
			return nil, err
		}
	} else {
		r.out.allRead = f.proxy.since()
	}
	r.chk = f.check()
	r.supEnd = measure(f.supervisorPids())
	r.stopCodes, r.orphans = f.stopAll(45 * time.Second)
	stopped = true

	coldEnd := r.coldReady
	r.steady = f.phase("steady state", coldEnd, coldEnd+o.Steady)
	r.phases = []phase{
		f.phase("cold start (all at once)", from, coldEnd),
		r.steady,
		f.phase("Vault down", r.out.stop, r.out.up),
		f.phase("sealed (answers 503)", r.out.up, r.out.unsealed),
		f.phase("unsealed until every supervisor re-read", r.out.unsealed, r.out.allRead+time.Millisecond),
	}
	r.recovery = f.phase("recovery", r.out.up, r.out.allRead+time.Millisecond)
	r.seconds = f.bySecond(r.out.stop, r.out.allRead+time.Millisecond)
	if recovered {
		r.phases = append(r.phases, f.phase("steady state after the recovery", r.out.allRead, r.out.allRead+o.After))
	}
	return r, err
}

// verdict is the run's failure, if any: a supervisor that exited on its own, a t3 restarted or
// without its user's token, an env file lost, a supervisor that did not stop cleanly.
func (r *result) verdict() error {
	c, n := r.chk, r.o.N
	switch {
	case c.alive != n:
		return fmt.Errorf("%d of %d supervisors exited during the run: %v", n-c.alive, n, c.died)
	case c.sameT3 != n || c.tokenOK != n:
		return fmt.Errorf("t3 restarted (%d/%d the same) or without its token (%d/%d right)", c.sameT3, n, c.tokenOK, n)
	case c.envOK != n:
		return fmt.Errorf("%d of %d env files lost or changed", n-c.envOK, n)
	case r.stopCodes[0] != n || r.orphans != 0:
		return fmt.Errorf("not every supervisor stopped with 0 at SIGTERM (%s) or a t3 outlived it (%d)", codes(r.stopCodes), r.orphans)
	}
	return nil
}
