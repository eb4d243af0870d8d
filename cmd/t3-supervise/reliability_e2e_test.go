//go:build linux

package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"t3-supervise/internal/vaulttest"
)

// faultProxy sits between a running supervisor and a real Vault. It counts every request and
// every read of a KV secret, and can answer in Vault's place with what a real server does not
// produce on demand: 5xx bursts, malformed JSON, a 30 s stall, a redirect loop.
type faultProxy struct {
	*httptest.Server
	backend atomic.Pointer[url.URL]
	mode    atomic.Value // "pass", "500", "malformed", "stall", "redirect"
	reads   atomic.Int64 // GETs of secret/data/...
	all     atomic.Int64
}

func newFaultProxy(t *testing.T, backend string) *faultProxy {
	f := &faultProxy{}
	f.setBackend(backend)
	f.mode.Store("pass")
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.all.Add(1)
		if strings.HasPrefix(r.URL.Path, "/v1/secret/data/") {
			f.reads.Add(1)
		}
		switch f.mode.Load().(string) {
		case "500":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `{"errors":["internal error"]}`)
		case "malformed":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"data": {"data": {"setup_token": `)
		case "stall":
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		case "redirect":
			http.Redirect(w, r, r.URL.String(), http.StatusTemporaryRedirect)
		default:
			httputil.NewSingleHostReverseProxy(f.backend.Load()).ServeHTTP(w, r)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *faultProxy) setBackend(addr string) {
	u, _ := url.Parse(addr)
	f.backend.Store(u)
}

// TestVaultFaultMatrix: while t3 runs and the supervisor re-reads the token every second, each
// fault gets one named event within a bounded time, a handful of requests (backoff, no storm),
// and changes nothing: t3 keeps running, the env file stays as it was.
func TestVaultFaultMatrix(t *testing.T) {
	t.Parallel() // no lane: its subtests take one each
	type tc struct {
		name       string
		persistent bool   // on a real (non-dev) server that can be sealed, unsealed, restarted
		class      string // the error class the event must name
		inject     func(w *vaultWorld, f *faultProxy)
		recover    func(t *testing.T, w *vaultWorld, f *faultProxy) // nil: no way back in this case
	}
	proxyMode := func(m string) func(*vaultWorld, *faultProxy) {
		return func(_ *vaultWorld, f *faultProxy) { f.mode.Store(m) }
	}
	pass := func(_ *testing.T, _ *vaultWorld, f *faultProxy) { f.mode.Store("pass") }
	stop := func(w *vaultWorld, _ *faultProxy) { w.v.Stop() }
	cases := []tc{
		{name: "5xx burst", class: "vault unavailable", inject: proxyMode("500"), recover: pass},
		{name: "malformed JSON", class: "vault unavailable", inject: proxyMode("malformed"), recover: pass},
		{name: "30 s stall", class: "vault unavailable", inject: proxyMode("stall"), recover: pass},
		{name: "redirect loop", class: "vault unavailable", inject: proxyMode("redirect"), recover: pass},
		{name: "server stopped", class: "vault unavailable", inject: stop},
		{name: "sealed", persistent: true, class: "vault unavailable",
			inject:  func(w *vaultWorld, _ *faultProxy) { w.v.Seal() },
			recover: func(t *testing.T, w *vaultWorld, _ *faultProxy) { w.persistent.Unseal(t) }},
		{name: "restarted mid-run", persistent: true, class: "vault unavailable", inject: stop,
			recover: func(t *testing.T, w *vaultWorld, _ *faultProxy) {
				w.persistent.Restart(t, true) // a restarted Vault comes back sealed: unsealed
			}},
		{name: "token revoked", class: "vault denied access", inject: func(w *vaultWorld, _ *faultProxy) {
			if err := w.v.Client.Auth().Token().RevokeOrphan(w.vaultToken); err != nil {
				w.t.Fatal(err)
			}
		}},
		{name: "policy narrowed", class: "vault denied access",
			inject: func(w *vaultWorld, _ *faultProxy) {
				w.v.Policy("workstation-claude-"+w.user, "workstation/claude-users/somebody-else")
			},
			recover: func(_ *testing.T, w *vaultWorld, _ *faultProxy) {
				w.v.Policy("workstation-claude-"+w.user, "workstation/claude-users/"+w.user)
			}},
		// The token's own TTL runs out: the outage starts then, not when the test starts, so
		// "inject" is waiting until Vault says so (the healthy re-reads before it are no storm).
		{name: "token expired", class: "vault denied access",
			inject: func(w *vaultWorld, _ *faultProxy) {
				c, err := vaulttest.NewClient(w.v.Addr, w.vaultToken)
				if err != nil {
					w.t.Fatal(err)
				}
				if !waitFor(func() bool { _, err := c.Auth().Token().LookupSelf(); return err != nil }, 10*time.Second) {
					w.t.Fatal("the 4 s token still works after 10 s")
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parallel(t)
			var w *vaultWorld
			if c.persistent {
				ps := vaulttest.StartPersistent(t)
				w = newVaultWorldOn(t, ps.Server)
				w.persistent = ps
			} else {
				w = newVaultWorld(t)
			}
			if c.name == "token expired" {
				sec, err := w.v.Client.Auth().Token().Create(&vault.TokenCreateRequest{
					Policies: []string{"workstation-claude-" + w.user}, TTL: "4s", ExplicitMaxTTL: "4s", Renewable: new(bool)})
				if err != nil {
					t.Fatal(err)
				}
				w.setVaultToken(sec.Auth.ClientToken)
			}
			f := newFaultProxy(t, w.v.Addr)
			w.setenv("VAULT_ADDR=" + f.URL)
			w.exe = shortRefreshBin(t)
			p, r := w.runServe("--refresh-interval", "1s", "--vault-timeout", "2s")
			before, _ := os.ReadFile(w.envFile())
			if c.inject != nil {
				c.inject(w, f)
			}
			start, reads0, all0 := time.Now(), f.reads.Load(), f.all.Load()
			failed := waitFor(func() bool { return strings.Contains(p.stderr.String(), "credential_refresh_failed") }, 15*time.Second)
			took := time.Since(start)
			if !failed {
				t.Fatalf("no credential_refresh_failed within 15 s\n%s", p.stderr)
			}
			readsAtFailure := f.reads.Load()
			line := eventLine(p.stderr.String(), "credential_refresh_failed")
			// The event names the backoff before the next re-read (7.5-15 s): a secret read
			// before it is a storm. Watched for up to 6 s of it, failing at the first early read.
			m := regexp.MustCompile(`next in (\w+)\)`).FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("the event names no backoff: %s", line)
			}
			next, err := time.ParseDuration(m[1])
			if err != nil {
				t.Fatalf("the event's backoff %q: %v", m[1], err)
			}
			window := min(next-time.Second, 6*time.Second)
			if waitFor(func() bool { return f.reads.Load() > readsAtFailure }, window) {
				t.Errorf("a secret read within %v of the failure, before the announced backoff of %v: a request storm", window, next)
			}
			reads, all := f.reads.Load()-reads0, f.all.Load()-all0
			if !strings.Contains(line, c.class) {
				t.Errorf("the event does not name %q: %s", c.class, line)
			}
			if n := strings.Count(p.stderr.String(), "credential_refresh_failed"); n != 1 {
				t.Errorf("%d failure events for one outage", n)
			}
			// One re-read (the client's own 2 retries included) before the first failure, then
			// the backoff waits 7.5-15 s: a storm would be dozens.
			if reads > 6 || all > 12 {
				t.Errorf("%d secret reads, %d requests in %v of outage: a request storm", reads, all, took+window)
			}
			if !processAlive(r.Pid) {
				t.Error("t3 died during a Vault fault")
			}
			after, _ := os.ReadFile(w.envFile())
			if string(after) != string(before) {
				t.Error("a Vault fault changed the env file")
			}
			if st, err := os.Stat(w.envFile()); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("env file after the fault: %v", err)
			}
			t.Logf("%s: event after %v, then %d secret reads / %d requests in all by %v later: %s",
				c.name, took.Round(10*time.Millisecond), reads, all, window, strings.TrimPrefix(line, "t3-supervise: "))
			if c.recover != nil {
				c.recover(t, w, f)
				p.cmd.Process.Signal(syscall.SIGHUP) // an operator's "try again now"
				if !waitFor(func() bool { return strings.Contains(p.stderr.String(), "credential_refresh_recovered") }, 20*time.Second) {
					t.Errorf("no credential_refresh_recovered after the fault ended\n%s", p.stderr)
				}
			}
			if code := w.stop(p); code != 0 {
				t.Errorf("exit %d", code)
			}
		})
	}
}

func waitFor(cond func() bool, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(25 * time.Millisecond)
	}
	return true
}

func eventLine(out, kind string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " "+kind+": ") {
			return l
		}
	}
	return ""
}

// A storm of 1,000 SIGHUPs with a SIGTERM in the middle: a clean stop, exit 0, nothing left,
// and the re-reads the SIGHUPs ask for coalesce (at most one a second) instead of hammering Vault.
func TestSignalStorm(t *testing.T) {
	parallel(t)
	w := newVaultWorld(t)
	f := newFaultProxy(t, w.v.Addr)
	w.setenv("VAULT_ADDR="+f.URL, "T3_FAKE_MODE=orphan")
	p, r := w.runServe("--refresh-interval", "0")
	grand := atoiOr0(strings.TrimPrefix(w.waitNote("grandchild "), "grandchild "))
	reads0 := f.reads.Load()
	start := time.Now()
	for i := 0; i < 1000; i++ {
		if i == 500 {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
		if p.cmd.Process.Signal(syscall.SIGHUP) != nil {
			break // it has exited
		}
	}
	code := p.wait(t, 30*time.Second)
	took := time.Since(start)
	if code != 0 {
		t.Errorf("exit %d after a SIGHUP storm and a SIGTERM\n%s", code, p.stderr)
	}
	for _, pid := range []int{r.Pid, grand} {
		if processAlive(pid) {
			t.Errorf("pid %d survived", pid)
		}
	}
	reads := f.reads.Load() - reads0
	if limit := int64(took.Seconds()) + 2; reads > limit {
		t.Errorf("%d secret reads for a SIGHUP storm of %v: not coalesced", reads, took)
	}
	t.Logf("1000 SIGHUPs, SIGTERM at the 500th: exit %d after %v, %d secret reads", code, took.Round(time.Millisecond), reads)
}

// SIGTERM while the supervisor is still asking Vault: it stops at once, starts nothing, writes
// nothing, exits 0.
func TestSIGTERMDuringStartUp(t *testing.T) {
	parallel(t)
	w := newVaultWorld(t)
	f := newFaultProxy(t, w.v.Addr)
	f.mode.Store("stall")
	w.setenv("VAULT_ADDR=" + f.URL)
	p := w.start("--no-cgroup", "--vault-timeout", "20s")
	if !waitFor(func() bool { return f.all.Load() > 0 }, 10*time.Second) {
		t.Fatal("the supervisor never asked Vault")
	}
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	code := p.wait(t, 10*time.Second)
	if code != 0 || time.Since(start) > 3*time.Second {
		t.Errorf("exit %d %v after SIGTERM during the Vault read\n%s", code, time.Since(start), p.stderr)
	}
	// An ordinary stop, not a credential failure: no error event claiming otherwise.
	if strings.Contains(p.stderr.String(), "credential_failed") || !strings.Contains(p.stderr.String(), "info stopped") {
		t.Errorf("events of a stop during start-up:\n%s", p.stderr)
	}
	w.assertNothingStarted()

	// And while t3 starts but does not answer yet (the readiness wait).
	w2 := newVaultWorld(t)
	p2, r := w2.runServe("--", "serve", "--port", freePort(t))
	start = time.Now()
	p2.cmd.Process.Signal(syscall.SIGTERM)
	if code := p2.wait(t, 10*time.Second); code != 0 || processAlive(r.Pid) {
		t.Errorf("exit %d, t3 alive %v after SIGTERM during the readiness wait", code, processAlive(r.Pid))
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}
