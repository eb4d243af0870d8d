package creds

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeVault answers what a resolution asks (lookup-self, the mount preflight, the KV v2 read)
// and renew-self, each replaceable, to produce faults a real server cannot produce on demand. It
// counts every request by path: a client must never storm a failing server.
type fakeVault struct {
	*httptest.Server
	lookup, mounts, read, renew, login http.HandlerFunc

	mu     sync.Mutex
	counts map[string]int
	hdrs   []http.Header
}

const fakeSecretPath = "/v1/secret/data/workstation/claude-users/alice"

func newFakeVault(t *testing.T) *fakeVault {
	f := &fakeVault{counts: map[string]int{}}
	f.lookup = func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"data":{"ttl":3600,"renewable":true,"policies":["default","workstation-claude-alice"]}}`)
	}
	f.mounts = func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"data":{"path":"secret/","type":"kv","options":{"version":"2"}}}`)
	}
	f.read = func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"data":{"data":{"setup_token":"`+testToken+`"},"metadata":{"version":3,"deletion_time":"","destroyed":false}}}`)
	}
	f.renew = func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"auth":{"client_token":"hvs.fake","renewable":true,"lease_duration":2}}`)
	}
	f.login = func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"auth":{"client_token":"hvs.fromapprole","renewable":true,"lease_duration":3600}}`)
	}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeVault) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.counts[r.URL.Path]++
	f.hdrs = append(f.hdrs, r.Header.Clone())
	h := map[string]http.HandlerFunc{
		"/v1/auth/token/lookup-self": f.lookup,
		"/v1/auth/token/renew-self":  f.renew,
		"/v1/auth/approle/login":     f.login,
	}[r.URL.Path]
	switch {
	case strings.HasPrefix(r.URL.Path, "/v1/sys/internal/ui/mounts/"):
		h = f.mounts
	case strings.HasPrefix(r.URL.Path, "/v1/secret/data/"):
		h = f.read
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json") // as Vault does; a handler may change it
	if h == nil {
		http.Error(w, `{"errors":["no handler"]}`, http.StatusNotFound)
		return
	}
	h(w, r)
}

func (f *fakeVault) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[path]
}

func (f *fakeVault) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.counts {
		n += c
	}
	return n
}

// env is an injected environment for Config.Getenv.
type env map[string]string

func (e env) get(k string) string { return e[k] }

func (f *fakeVault) config(t *testing.T) Config {
	return Config{User: "alice", Timeout: 5 * time.Second,
		TokenFile: filepath.Join(t.TempDir(), "absent"),
		Getenv:    env{"VAULT_ADDR": f.URL, "VAULT_TOKEN": "hvs.fake"}.get}
}

func resolveWith(cfg Config) (Result, time.Duration, error) {
	start := time.Now()
	c, err := New(context.Background(), cfg)
	if err != nil {
		return Result{}, time.Since(start), err
	}
	defer c.Close()
	res, err := c.Resolve(context.Background())
	return res, time.Since(start), err
}

func TestFaultsAreUnavailableBoundedAndNoStorm(t *testing.T) {
	stall := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	}
	for _, tc := range []struct {
		name     string
		read     http.HandlerFunc
		timeout  time.Duration
		maxReads int
		mention  string
	}{
		// The Vault client retries 5xx twice, 1 to 1.5 s apart (api.DefaultConfig): 3 reads.
		{"500 burst", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			fmt.Fprint(w, `{"errors":["internal error"]}`)
		}, 5 * time.Second, 3, "HTTP 500"},
		{"502 from a proxy", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) }, 5 * time.Second, 3, "HTTP 502"},
		{"503 sealed", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(503)
			fmt.Fprint(w, `{"errors":["Vault is sealed"]}`)
		}, 5 * time.Second, 3, "sealed"},
		{"malformed JSON", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"data": {"data": {"setup_token": "`+testToken[:20])
		}, 5 * time.Second, 1, "not Vault's JSON"},
		{"HTML error page", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `<html>proxy error</html>`) }, 5 * time.Second, 1, "not Vault's JSON"},
		{"HTML error page, declared", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, `<html>proxy error</html>`)
		}, 5 * time.Second, 1, "without Vault's JSON"},
		// A 404 that is not Vault's (a proxy's page) must not pass for "no secret": an opt-out
		// would delete the user's env file.
		{"HTML 404", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(404)
			fmt.Fprint(w, `<html>not found</html>`)
		}, 5 * time.Second, 1, "not Vault's JSON"},
		{"stall past the timeout", stall, 700 * time.Millisecond, 1, "within the timeout"},
		// An empty 404 is what the Vault client calls "not found", but it is not Vault's answer.
		{"empty 404", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Del("Content-Type")
			w.WriteHeader(404)
		}, 5 * time.Second, 1, "HTTP 404 without Vault's JSON"},
		{"empty 404 declared JSON", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) }, 5 * time.Second, 1, "not Vault's JSON"},
		{"JSON 404 without the JSON type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(404)
			fmt.Fprint(w, `{"errors":[]}`)
		}, 5 * time.Second, 1, "HTTP 404 without Vault's JSON"},
		// The client follows one redirect itself; the second 307 comes back as an answer, and
		// its body is not Vault's.
		{"redirect loop", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, r.URL.String(), http.StatusTemporaryRedirect)
		}, 5 * time.Second, 2, "HTTP 307"},
		// The Vault client returns this as "secret not found": without the check of Vault's
		// JSON 404, a redirect loop would be an opt-out and delete the env file.
		{"redirect loop, empty body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", r.URL.String())
			w.WriteHeader(http.StatusTemporaryRedirect)
		}, 5 * time.Second, 2, "HTTP 307"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeVault(t)
			f.read = tc.read
			cfg := f.config(t)
			cfg.Timeout = tc.timeout
			start := time.Now()
			c, err := New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Resolve(context.Background())
			took := time.Since(start)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", scrub(fmt.Sprint(err)))
			}
			if !strings.Contains(err.Error(), "secret/workstation/claude-users/alice") || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error does not name the path and %q: %v", tc.mention, err)
			}
			if strings.Contains(err.Error(), testToken[13:20]) {
				t.Errorf("error repeats the body: %v", scrub(err.Error()))
			}
			if limit := tc.timeout + 1500*time.Millisecond; took > limit {
				t.Errorf("took %v, bound %v", took, limit)
			}
			if n := f.count(fakeSecretPath); n > tc.maxReads || n < 1 {
				t.Errorf("%d reads of the secret, want 1 to %d", n, tc.maxReads)
			}
			t.Logf("%v after %v, %d requests in all", err, took.Round(time.Millisecond), f.total())
		})
	}
}

func TestStallAtLoginIsBounded(t *testing.T) {
	t.Parallel()
	f := newFakeVault(t)
	f.lookup = func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	cfg := f.config(t)
	cfg.Timeout = 600 * time.Millisecond
	_, took, err := resolveWith(cfg)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "lookup-self") {
		t.Errorf("err %v", err)
	}
	if took > cfg.Timeout+time.Second {
		t.Errorf("took %v", took)
	}
	// A smaller VAULT_CLIENT_TIMEOUT bounds each request, as in the Vault CLI.
	cfg.Timeout = 20 * time.Second
	cfg.Getenv = env{"VAULT_ADDR": f.URL, "VAULT_TOKEN": "hvs.fake", "VAULT_CLIENT_TIMEOUT": "1"}.get
	if _, took, err = resolveWith(cfg); !errors.Is(err, ErrUnavailable) || took > 3*time.Second {
		t.Errorf("VAULT_CLIENT_TIMEOUT=1: %v after %v", err, took)
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close() // nothing listens there now: connection refused
	cfg := Config{User: "alice", Timeout: 8 * time.Second, Getenv: env{"VAULT_ADDR": addr, "VAULT_TOKEN": "hvs.fake"}.get}
	_, took, err := resolveWith(cfg)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("err %v", err)
	}
	if took > cfg.Timeout {
		t.Errorf("took %v", took)
	}
	t.Logf("%v after %v", err, took.Round(time.Millisecond))
}

// Not parallel: its bad VAULT_CACERT is briefly in the process environment (newVaultClient),
// where vaulttest's api.NewClient would trip over it.
func TestTLSAndVaultCACert(t *testing.T) {
	f := newFakeVault(t)
	f.Close()
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is the point
	f.StartTLS()
	cfg := f.config(t)
	cfg.Getenv = env{"VAULT_ADDR": f.URL, "VAULT_TOKEN": "hvs.fake"}.get
	if _, _, err := resolveWith(cfg); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("unknown CA: %v", err)
	}
	// VAULT_CACERT from the injected environment is what the Vault client trusts.
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw}), 0o600)
	cfg.Getenv = env{"VAULT_ADDR": f.URL, "VAULT_TOKEN": "hvs.fake", "VAULT_CACERT": ca, "VAULT_NAMESPACE": "team-a"}.get
	res, _, err := resolveWith(cfg)
	if err != nil || res.Outcome != Found {
		t.Fatalf("with VAULT_CACERT: %v %v", res.Outcome, err)
	}
	f.mu.Lock()
	ns := f.hdrs[len(f.hdrs)-1].Get("X-Vault-Namespace")
	f.mu.Unlock()
	if ns != "team-a" {
		t.Errorf("VAULT_NAMESPACE not sent: %q", ns)
	}
	cfg.Getenv = env{"VAULT_ADDR": f.URL, "VAULT_TOKEN": "hvs.fake", "VAULT_CACERT": filepath.Join(t.TempDir(), "missing.pem")}.get
	if _, _, err := resolveWith(cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "VAULT_") {
		t.Errorf("missing VAULT_CACERT: %v", err)
	}
}

func TestInjectedEnvironmentLeavesTheProcessAlone(t *testing.T) {
	t.Setenv("VAULT_ADDR", "http://192.0.2.1:1") // TEST-NET: would hang, were it used
	t.Setenv("VAULT_TOKEN", "hvs.process")
	f := newFakeVault(t)
	cfg := f.config(t)
	cfg.Getenv = env{"VAULT_ADDR": f.URL}.get // no VAULT_TOKEN here
	_, _, err := resolveWith(cfg)
	// api.NewClient would have taken the process's VAULT_TOKEN; the injected environment has none.
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "VAULT_TOKEN is unset") {
		t.Errorf("err %v", err)
	}
	if os.Getenv("VAULT_ADDR") != "http://192.0.2.1:1" || os.Getenv("VAULT_TOKEN") != "hvs.process" {
		t.Error("the process environment was not restored")
	}
	if f.total() != 0 {
		t.Errorf("%d requests without a token", f.total())
	}
}

func TestFakeVaultAnswers(t *testing.T) {
	md := func(v int, deleted string, destroyed bool) string {
		return fmt.Sprintf(`"metadata":{"version":%d,"deletion_time":%q,"destroyed":%v}`, v, deleted, destroyed)
	}
	for _, tc := range []struct {
		name string
		code int
		body string
		want Outcome
		err  error
	}{
		{"found", 200, `{"data":{"data":{"setup_token":"` + testToken + `"},` + md(3, "", false) + `}}`, Found, nil},
		{"found, trailing newline", 200, `{"data":{"data":{"setup_token":"` + testToken + `\n"},` + md(3, "", false) + `}}`, Found, nil},
		{"no field", 200, `{"data":{"data":{"other":"x"},` + md(1, "", false) + `}}`, NoField, nil},
		{"empty field", 200, `{"data":{"data":{"setup_token":""},` + md(1, "", false) + `}}`, NoField, nil},
		{"null field", 200, `{"data":{"data":{"setup_token":null},` + md(1, "", false) + `}}`, NoField, nil},
		{"number", 200, `{"data":{"data":{"setup_token":42},` + md(1, "", false) + `}}`, 0, ErrMalformed},
		{"not a token", 200, `{"data":{"data":{"setup_token":"hunter2-hunter2-hunter2-hunter2"},` + md(1, "", false) + `}}`, 0, ErrMalformed},
		{"injection", 200, `{"data":{"data":{"setup_token":"` + testToken + `\nEVIL=1"},` + md(1, "", false) + `}}`, 0, ErrMalformed},
		{"deleted", 404, `{"data":{"data":null,` + md(4, "2026-11-01T10:00:00Z", false) + `}}`, Deleted, nil},
		{"destroyed", 404, `{"data":{"data":null,` + md(4, "", true) + `}}`, Destroyed, nil},
		{"deleted and destroyed", 404, `{"data":{"data":null,` + md(4, "2026-11-01T10:00:00Z", true) + `}}`, Destroyed, nil},
		{"no secret", 404, `{"errors":[]}`, NoSecret, nil},
		{"no secret, no body", 404, ``, 0, ErrUnavailable},
		{"denied", 403, `{"errors":["1 error occurred:\n\t* permission denied\n\n"]}`, 0, ErrDenied},
	} {
		f := newFakeVault(t)
		f.read = func(w http.ResponseWriter, r *http.Request) {
			if tc.body != "" {
				w.Header().Set("Content-Type", "application/json")
			}
			w.WriteHeader(tc.code)
			fmt.Fprint(w, tc.body)
		}
		res, _, err := resolveWith(f.config(t))
		if tc.err != nil {
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), "claude-users/alice") {
				t.Errorf("%s: err %v, want %v naming the path", tc.name, err, tc.err)
			}
			if err != nil && (strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), testToken[13:])) {
				t.Errorf("%s: the error repeats the value", tc.name)
			}
			continue
		}
		if err != nil || res.Outcome != tc.want {
			t.Errorf("%s: %v %v, want %v", tc.name, res.Outcome, err, tc.want)
			continue
		}
		if tc.want == Found && (res.Version != 3 || res.Token.Reveal() != testToken || res.Auth != AuthEnv || res.Mount != "secret" || res.KVVersion != 2 || !res.Renewable || res.TTL != time.Hour) {
			t.Errorf("%s: %+v", tc.name, res)
		}
		if tc.want != Found && !res.Token.IsZero() {
			t.Errorf("%s: a token with outcome %v", tc.name, res.Outcome)
		}
	}
}

func TestMounts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, mounts string
		code         int
		err          error
		mount        string
	}{
		{"kv v1", `{"data":{"path":"secret/","type":"kv","options":{"version":"1"}}}`, 200, ErrConfig, ""},
		{"kv without options", `{"data":{"path":"secret/","type":"kv","options":null}}`, 200, ErrConfig, ""},
		{"not kv", `{"data":{"path":"secret/","type":"cubbyhole"}}`, 200, ErrConfig, ""},
		// Refused (403): the first segment is a guess, and Result says so (judgeRead then
		// trusts no bare "no secret").
		{"preflight refused", `{"errors":["preflight capability check returned 403"]}`, 403, nil, "secret"},
		{"preflight failing", `{"errors":["boom"]}`, 500, ErrUnavailable, ""},
		// An answer that does not name a mount holding the path is no answer (it used to be
		// replaced by a guess).
		{"preflight without data", `{"data":null}`, 200, ErrUnavailable, ""},
		{"preflight names another mount", `{"data":{"path":"other/","type":"kv","options":{"version":"2"}}}`, 200, ErrUnavailable, ""},
		{"preflight 404", `{"errors":[]}`, 404, ErrUnavailable, ""},
	} {
		f := newFakeVault(t)
		f.mounts = func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.code)
			fmt.Fprint(w, tc.mounts)
		}
		res, _, err := resolveWith(f.config(t))
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
			}
			if tc.err == ErrConfig && !strings.Contains(err.Error(), "KV v2") {
				t.Errorf("%s: does not say KV v2 is needed: %v", tc.name, err)
			}
			if tc.err == ErrUnavailable && !strings.Contains(err.Error(), "sys/internal/ui/mounts") {
				t.Errorf("%s: does not name the lookup: %v", tc.name, err)
			}
			continue
		}
		if err != nil || res.Outcome != Found || res.Mount != tc.mount || res.MountGuessed != (tc.code == 403) {
			t.Errorf("%s: %+v %v", tc.name, res, err)
		}
	}
}

func TestAuthFailures(t *testing.T) {
	f := newFakeVault(t)
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), mode)
		os.Chmod(p, mode)
		return p
	}
	base := f.config(t)

	cfg := base
	cfg.Getenv = env{"VAULT_ADDR": f.URL}.get
	if _, _, err := resolveWith(cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), cfg.TokenFile) {
		t.Errorf("no auth at all: %v", err)
	}
	cfg.TokenFileExplicit = true
	if _, _, err := resolveWith(cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), cfg.TokenFile) {
		t.Errorf("explicit missing token file: %v", err)
	}
	// An explicit missing file is an error even when VAULT_TOKEN would do.
	cfg.Getenv = base.Getenv
	if _, _, err := resolveWith(cfg); !errors.Is(err, ErrConfig) {
		t.Errorf("explicit missing token file, VAULT_TOKEN set: %v", err)
	}
	cfg.TokenFileExplicit = false
	cfg.Getenv = env{"VAULT_ADDR": f.URL, "VAULT_TOKEN": "hvs.a\nhvs.b"}.get
	if _, _, err := resolveWith(cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "VAULT_TOKEN") || strings.Contains(err.Error(), "hvs.") {
		t.Errorf("VAULT_TOKEN with a newline inside: %v", err)
	}
	for name, content := range map[string]string{"empty": " \n", "two tokens": "hvs.a hvs.b\n"} {
		cfg := base
		cfg.TokenFile = write(strings.ReplaceAll(name, " ", "-"), content, 0o600)
		if _, _, err := resolveWith(cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), cfg.TokenFile) || strings.Contains(err.Error(), "hvs.") {
			t.Errorf("token file %s: %v", name, err)
		}
	}
	if os.Geteuid() != 0 { // root reads a 0000 file anyway
		cfg := base
		cfg.TokenFile = write("unreadable", "hvs.x", 0o000)
		if _, _, err := resolveWith(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("unreadable token file: %v", err)
		}
	}

	// lookup-self refused: an expired or revoked token.
	f.lookup = func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(403)
		fmt.Fprint(w, `{"errors":["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]}`)
	}
	if _, _, err := resolveWith(base); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "VAULT_TOKEN") || strings.Contains(err.Error(), "\n") {
		t.Errorf("revoked token: %q", err)
	}

	// AppRole: a refused login is denied; a missing secret id file is the operator's.
	cfg = base
	cfg.Getenv = env{"VAULT_ADDR": f.URL}.get
	cfg.AppRoleRoleID, cfg.AppRoleSecretIDFile = "role", write("sid", "secret-id\n", 0o600)
	f.login = func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		fmt.Fprint(w, `{"errors":["invalid role or secret ID"]}`)
	}
	if _, _, err := resolveWith(cfg); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "AppRole") {
		t.Errorf("refused AppRole login: %v", err)
	}
	cfg.AppRoleSecretIDFile = filepath.Join(dir, "no-sid")
	if _, _, err := resolveWith(cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "no-sid") {
		t.Errorf("missing secret id file: %v", err)
	}
	cfg.AppRoleSecretIDFile = ""
	if _, _, err := resolveWith(cfg); !errors.Is(err, ErrConfig) {
		t.Errorf("role id without a secret id file: %v", err)
	}
}

func TestForeignTokenRefused(t *testing.T) {
	f := newFakeVault(t)
	cfg := f.config(t)
	cfg.PolicyTemplate = "workstation-claude-{user}"
	if _, _, err := resolveWith(cfg); err != nil {
		t.Fatalf("alice's own token: %v", err)
	}
	cfg.User = "bob"
	if _, _, err := resolveWith(cfg); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "workstation-claude-bob") {
		t.Errorf("alice's token for bob: %v", err)
	}
	// An identity (entity or group) policy counts as the user's own.
	f.lookup = func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"data":{"ttl":0,"renewable":false,"policies":["default"],"identity_policies":["workstation-claude-bob"]}}`)
	}
	if _, _, err := resolveWith(cfg); err != nil {
		t.Errorf("identity policy: %v", err)
	}
	cfg.PolicyTemplate = "workstation-claude"
	if _, _, err := resolveWith(cfg); !errors.Is(err, ErrConfig) {
		t.Errorf("policy template without {user}: %v", err)
	}
}

// keepAlive runs c.KeepAlive until the test ends and hands over its reports as they come; at the
// end, KeepAlive must return promptly once its context is cancelled.
func keepAlive(t *testing.T, c *Client) <-chan Renewal {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reports := make(chan Renewal, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.KeepAlive(ctx, func(r Renewal) {
			select {
			case reports <- r:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("KeepAlive still running 5 s after its context ended")
		}
	})
	return reports
}

// awaitReport waits up to limit for a report that ok accepts, passing over the others, and
// fails the test without one.
func awaitReport(t *testing.T, reports <-chan Renewal, limit time.Duration, what string, ok func(Renewal) bool) Renewal {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case r := <-reports:
			if ok(r) {
				return r
			}
		case <-deadline:
			t.Fatalf("no %s reported within %v", what, limit)
		}
	}
}

// KeepAlive against a failing renew-self: every failure is reported, and the requests are paced
// by the backoff, not a storm: each renew-self comes at least the backoff's shortest pause after
// the one before (pauses of 100-200, 200-400, then 400-800 ms), not as fast as Vault answers.
func TestKeepAliveBacksOff(t *testing.T) {
	t.Parallel()
	f := newFakeVault(t)
	var mu sync.Mutex
	var renews []time.Time
	f.lookup = func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"data":{"ttl":60,"renewable":true,"policies":["default"]}}`)
	}
	f.renew = func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		renews = append(renews, time.Now())
		mu.Unlock()
		w.WriteHeader(500)
		fmt.Fprint(w, `{"errors":["storage is down"]}`)
	}
	cfg := f.config(t)
	cfg.Getenv = env{"VAULT_ADDR": f.URL, "VAULT_TOKEN": "hvs.fake", "VAULT_MAX_RETRIES": "0"}.get
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.backoffMin, c.backoffMax = 200*time.Millisecond, 800*time.Millisecond
	reports := keepAlive(t, c)
	for i := 0; i < 4; i++ {
		r := awaitReport(t, reports, 5*time.Second, fmt.Sprintf("failure %d", i+1), func(r Renewal) bool { return r.Err != nil })
		if !errors.Is(r.Err, ErrUnavailable) || !strings.Contains(r.Err.Error(), "renew-self") {
			t.Errorf("renewal error %v", r.Err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(renews) < 4 {
		t.Fatalf("%d renew-self requests for 4 failures reported", len(renews))
	}
	for i, least := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		if gap := renews[i+1].Sub(renews[i]); gap < least {
			t.Errorf("renew-self %d came %v after the one before, want at least %v", i+2, gap, least)
		}
	}
	t.Logf("%d renew-self requests, %d requests in all", len(renews), f.total())
}

// KeepAlive renews, and when Vault says the token is gone, logs in again with AppRole.
func TestKeepAliveRenewsThenLogsInAgain(t *testing.T) {
	t.Parallel()
	f := newFakeVault(t)
	var dead atomic.Bool
	f.lookup = func(w http.ResponseWriter, r *http.Request) {
		if dead.Load() && r.Header.Get("X-Vault-Token") == "hvs.first" {
			w.WriteHeader(403)
			fmt.Fprint(w, `{"errors":["permission denied"]}`)
			return
		}
		fmt.Fprint(w, `{"data":{"ttl":2,"renewable":true,"policies":["default"]}}`)
	}
	var logins atomic.Int32
	f.login = func(w http.ResponseWriter, r *http.Request) {
		tok := "hvs.first"
		if logins.Add(1) > 1 {
			tok = "hvs.second"
		}
		fmt.Fprintf(w, `{"auth":{"client_token":%q,"renewable":true,"lease_duration":2}}`, tok)
	}
	var renewedWith sync.Map
	f.renew = func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("X-Vault-Token")
		renewedWith.Store(tok, true)
		if dead.Load() && tok == "hvs.first" {
			w.WriteHeader(500) // not "permission denied": the watcher reports it
			return
		}
		fmt.Fprintf(w, `{"auth":{"client_token":%q,"renewable":true,"lease_duration":2}}`, tok)
	}
	sid := filepath.Join(t.TempDir(), "sid")
	os.WriteFile(sid, []byte("sid"), 0o600)
	cfg := f.config(t)
	cfg.Getenv = env{"VAULT_ADDR": f.URL, "VAULT_MAX_RETRIES": "0"}.get
	cfg.AppRoleRoleID, cfg.AppRoleSecretIDFile = "role", sid
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.backoffMin = 100 * time.Millisecond
	reports := keepAlive(t, c)
	wait := func(what string, ok func(Renewal) bool) {
		t.Helper()
		awaitReport(t, reports, 5*time.Second, what, ok)
	}
	wait("renewal", func(r Renewal) bool { return r.Err == nil && r.TTL == 2*time.Second && !r.Relogin })
	dead.Store(true)
	wait("failure", func(r Renewal) bool { return r.Err != nil })
	wait("re-login", func(r Renewal) bool { return r.Relogin && r.Err == nil })
	res, err := c.Resolve(context.Background())
	if err != nil || res.Outcome != Found {
		t.Errorf("resolve after re-login: %v %v", res.Outcome, err)
	}
	wait("renewal of the new token", func(r Renewal) bool { return r.Err == nil && !r.Relogin })
	if _, ok := renewedWith.Load("hvs.second"); !ok {
		t.Error("the new token was never renewed")
	}
}
