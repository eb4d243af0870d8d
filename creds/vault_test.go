//go:build linux

package creds

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"t3-supervise/internal/vaulttest"
)

// Against a real Vault dev server (tier "vault", T3S_VAULT_BIN): KV v2 at secret/, token
// files, VAULT_TOKEN, AppRole with a per-user policy, periodic tokens, a sealed and a stopped
// server. Each test has its own server, so they run in parallel.

func userPath(u string) string { return "workstation/claude-users/" + u }

// aliceVault is a real Vault whose policy workstation-claude-alice reads alice's path only,
// and whose path holds setup token tok unless tok is "".
func aliceVault(t *testing.T, tok string) *vaulttest.Server {
	t.Helper()
	v := vaulttest.Start(t)
	v.Policy("workstation-claude-alice", userPath("alice"))
	if tok != "" {
		v.Put(userPath("alice"), map[string]any{"setup_token": tok})
	}
	return v
}

func secretFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vault-token")
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// realConfig authenticates with a token file holding tok; the environment has only VAULT_ADDR.
func realConfig(t *testing.T, v *vaulttest.Server, tok string) Config {
	return Config{User: "alice", TokenFile: secretFile(t, tok), Timeout: 8 * time.Second,
		Getenv: env{"VAULT_ADDR": v.Addr}.get}
}

func resolveReal(t *testing.T, cfg Config) (Result, error) {
	t.Helper()
	res, _, err := resolveWith(cfg)
	return res, err
}

func TestRealVaultOutcomes(t *testing.T) {
	t.Parallel()
	v := aliceVault(t, "")
	tok := vaulttest.FakeToken()
	cfg := realConfig(t, v, v.Token(0, "workstation-claude-alice"))
	kv := v.Client.KVv2("secret")
	ctx := context.Background()

	if res, err := resolveReal(t, cfg); err != nil || res.Outcome != NoSecret || res.Version != 0 {
		t.Fatalf("no secret yet: %+v %v", res, err)
	}
	v.Put(userPath("alice"), map[string]any{"other": "x"}) // version 1
	if res, err := resolveReal(t, cfg); err != nil || res.Outcome != NoField || res.Version != 1 {
		t.Fatalf("no field: %+v %v", res, err)
	}
	v.Put(userPath("alice"), map[string]any{"setup_token": ""}) // 2
	if res, err := resolveReal(t, cfg); err != nil || res.Outcome != NoField {
		t.Fatalf("empty field: %+v %v", res, err)
	}
	v.Put(userPath("alice"), map[string]any{"setup_token": tok}) // 3
	res, err := resolveReal(t, cfg)
	if err != nil || res.Outcome != Found || !res.Token.Equal(NewSecret(tok)) || res.Version != 3 ||
		res.Mount != "secret" || res.KVVersion != 2 || res.Auth != AuthTokenFile || res.Path != "secret/"+userPath("alice") {
		t.Fatalf("found: %+v %v", res, err)
	}
	v.Put(userPath("alice"), map[string]any{"setup_token": "not-a-token"}) // 4
	if _, err := resolveReal(t, cfg); !errors.Is(err, ErrMalformed) || strings.Contains(err.Error(), "not-a-token") || !strings.Contains(err.Error(), userPath("alice")) {
		t.Fatalf("malformed: %v", err)
	}
	v.Put(userPath("alice"), map[string]any{"setup_token": tok}) // 5
	if err := kv.Delete(ctx, userPath("alice")); err != nil {
		t.Fatal(err)
	}
	if res, err := resolveReal(t, cfg); err != nil || res.Outcome != Deleted || res.Version != 5 {
		t.Fatalf("deleted: %+v %v", res, err)
	}
	if err := kv.Undelete(ctx, userPath("alice"), []int{5}); err != nil {
		t.Fatal(err)
	}
	if res, err := resolveReal(t, cfg); err != nil || res.Outcome != Found || res.Version != 5 {
		t.Fatalf("undeleted: %+v %v", res, err)
	}
	v.Put(userPath("alice"), map[string]any{"setup_token": tok}) // 6
	if err := kv.Destroy(ctx, userPath("alice"), []int{6}); err != nil {
		t.Fatal(err)
	}
	if res, err := resolveReal(t, cfg); err != nil || res.Outcome != Destroyed || res.Version != 6 {
		t.Fatalf("destroyed: %+v %v", res, err)
	}
	if err := kv.DeleteMetadata(ctx, userPath("alice")); err != nil {
		t.Fatal(err)
	}
	if res, err := resolveReal(t, cfg); err != nil || res.Outcome != NoSecret {
		t.Fatalf("metadata deleted: %+v %v", res, err)
	}

	// A KV v1 mount is refused, saying KV v2 is needed.
	if err := v.Client.Sys().Mount("kv1", &vault.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Client.Logical().Write("kv1/claude/alice", map[string]any{"setup_token": tok}); err != nil {
		t.Fatal(err)
	}
	root := cfg
	root.TokenFile, root.PathTemplate = secretFile(t, v.RootToken), "kv1/claude/{user}"
	if _, err := resolveReal(t, root); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "KV v2") {
		t.Fatalf("kv v1: %v", err)
	}
}

// A mount moved, disabled or mistyped: Vault 1.19.0 answers the read 404 {"errors":["no handler
// for route ..."]} (or, under the user's narrow policy for a mistyped mount, 403), and the mount
// lookup 403. None of it is an opt-out: with a materialized token the decision is the fallback,
// the env file kept.
func TestRealVaultMountGoneIsNeverAnOptOut(t *testing.T) {
	t.Parallel()
	tok := vaulttest.FakeToken()
	v := aliceVault(t, tok)
	narrow := realConfig(t, v, v.Token(0, "workstation-claude-alice"))
	root := narrow
	root.TokenFile = secretFile(t, v.RootToken)
	failure := func(what string, cfg Config, class error, mention string) {
		t.Helper()
		res, err := resolveReal(t, cfg)
		if !errors.Is(err, class) || !strings.Contains(err.Error(), mention) || res.Outcome.OptOut() {
			t.Fatalf("%s: %v %v, want %v saying %q", what, res.Outcome, err, class, mention)
		}
		d, derr := Decide(res, err, NewSecret(tok), nil)
		if derr != nil || d.EnvFile != ActionKeep || d.From != FromFallback || !d.Inject.Equal(NewSecret(tok)) {
			t.Errorf("%s: decision %+v %v, want the fallback", what, d, derr)
		}
		t.Logf("%s: %v", what, err)
	}
	found := func(what string, cfg Config) {
		t.Helper()
		if res, err := resolveReal(t, cfg); err != nil || res.Outcome != Found {
			t.Fatalf("%s: %v %v", what, res.Outcome, err)
		}
	}
	found("before", narrow)

	v.MoveMount("secret", "secret-moved") // vault secrets move secret/ secret-moved/
	failure("moved, the user's token", narrow, ErrUnavailable, "no handler for route")
	failure("moved, a root token", root, ErrUnavailable, "no handler for route")
	v.MoveMount("secret-moved", "secret")
	found("moved back", narrow)

	typo := narrow
	typo.PathTemplate = "secrt/workstation/claude-users/{user}"
	failure("mistyped mount, the user's token", typo, ErrDenied, "permission denied")
	typo.TokenFile = root.TokenFile
	failure("mistyped mount, a root token", typo, ErrUnavailable, "no handler for route")

	v.DisableMount("secret") // vault secrets disable secret/
	failure("disabled, the user's token", narrow, ErrUnavailable, "no handler for route")
	failure("disabled, a root token", root, ErrUnavailable, "no handler for route")
}

// The whole decision against a real server: a token is materialized, kept while Vault is
// away, and removed only by a confirmed opt-out.
func TestRealVaultDecisionAndEnvFile(t *testing.T) {
	t.Parallel()
	tok := vaulttest.FakeToken()
	v := aliceVault(t, tok)
	cfg := realConfig(t, v, v.Token(0, "workstation-claude-alice"))
	envFile := filepath.Join(t.TempDir(), ".config", "claude-auth-sync", "claude-oauth.env")

	run := func() Decision {
		t.Helper()
		res, err := resolveReal(t, cfg)
		cached, cerr := ReadEnvFile(envFile)
		d, err := Decide(res, err, cached, cerr)
		if err != nil {
			t.Fatalf("decide: %v", err)
		}
		switch d.EnvFile {
		case ActionWrite:
			if _, err := WriteEnvFile(envFile, d.Inject); err != nil {
				t.Fatal(err)
			}
		case ActionRemove:
			if _, err := RemoveEnvFile(envFile); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	if d := run(); d.From != FromVault || d.EnvFile != ActionWrite || d.Inject.Reveal() != tok {
		t.Fatalf("first run: %+v", d)
	}
	if d := run(); d.EnvFile != ActionUnchanged {
		t.Fatalf("second run: %+v", d)
	}
	if err := v.Client.KVv2("secret").Delete(context.Background(), userPath("alice")); err != nil {
		t.Fatal(err)
	}
	if d := run(); d.Outcome != Deleted || d.EnvFile != ActionRemove || !d.Inject.IsZero() {
		t.Fatalf("deleted: %+v", d)
	}
	if _, err := os.Stat(envFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the opt-out left the file: %v", err)
	}
	v.Put(userPath("alice"), map[string]any{"setup_token": tok})
	run()
	v.Stop()
	cfg.Timeout = 3 * time.Second
	if d := run(); d.From != FromFallback || d.EnvFile != ActionKeep || !errors.Is(d.Fallback, ErrUnavailable) || d.Inject.Reveal() != tok {
		t.Fatalf("Vault away: %+v", d)
	}
	if got, err := ReadEnvFile(envFile); err != nil || got.Reveal() != tok {
		t.Fatalf("the fallback lost the file: %v", err)
	}
}

func TestRealVaultAuthOrderAndDenial(t *testing.T) {
	t.Parallel()
	v := aliceVault(t, vaulttest.FakeToken())
	v.Put(userPath("bob"), map[string]any{"setup_token": vaulttest.FakeToken()})
	good := v.Token(0, "workstation-claude-alice")
	withToken := func(tok string) func(string) string { return env{"VAULT_ADDR": v.Addr, "VAULT_TOKEN": tok}.get }
	base := Config{User: "alice", Timeout: 8 * time.Second}

	// A token file (0600) authenticates, and wins over VAULT_TOKEN: a garbage VAULT_TOKEN
	// does not matter.
	cfg := base
	cfg.TokenFile, cfg.Getenv = secretFile(t, good), withToken("hvs.garbage")
	if res, err := resolveReal(t, cfg); err != nil || res.Auth != AuthTokenFile || res.Outcome != Found {
		t.Fatalf("token file first: %+v %v", res, err)
	}
	// And it is used as it is: a garbage token file is not rescued by a good VAULT_TOKEN.
	cfg.TokenFile, cfg.Getenv = secretFile(t, "hvs.garbage"), withToken(good)
	if _, err := resolveReal(t, cfg); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), cfg.TokenFile) {
		t.Fatalf("garbage token file: %v", err)
	}
	// No file at the default location: VAULT_TOKEN.
	cfg.TokenFile = filepath.Join(t.TempDir(), "absent")
	if res, err := resolveReal(t, cfg); err != nil || res.Auth != AuthEnv || res.Outcome != Found {
		t.Fatalf("VAULT_TOKEN: %+v %v", res, err)
	}
	// A revoked token is denied at lookup-self.
	bad := v.Token(0, "workstation-claude-alice")
	if err := v.Client.Auth().Token().RevokeTree(bad); err != nil {
		t.Fatal(err)
	}
	cfg.Getenv = withToken(bad)
	if _, err := resolveReal(t, cfg); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "lookup-self") {
		t.Fatalf("revoked: %v", err)
	}
	// alice's token on bob's path: denied, naming bob's path.
	cfg.Getenv, cfg.User = withToken(good), "bob"
	if _, err := resolveReal(t, cfg); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), userPath("bob")) {
		t.Fatalf("bob's path with alice's token: %v", err)
	}

	// AppRole whose policy allows only alice's own path: bob's path is denied, and says so.
	roleID, secretID := v.AppRole("alice", "workstation-claude-alice")
	cfg = base
	cfg.TokenFile, cfg.Getenv = filepath.Join(t.TempDir(), "absent"), env{"VAULT_ADDR": v.Addr}.get
	cfg.AppRoleRoleID, cfg.AppRoleSecretIDFile = roleID, secretFile(t, secretID)
	if res, err := resolveReal(t, cfg); err != nil || res.Auth != AuthAppRole || res.Outcome != Found || !res.Renewable || res.TTL < 59*time.Minute || res.TTL > time.Hour {
		t.Fatalf("approle: %+v %v", res, err)
	}
	cfg.User = "bob"
	_, err := resolveReal(t, cfg)
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "secret/"+userPath("bob")) {
		t.Fatalf("bob's path with alice's role: %v", err)
	}
	t.Logf("bob's path with alice's AppRole: %v", err)
	// A wrong secret id is a refused login.
	cfg.User = "alice"
	cfg.AppRoleSecretIDFile = secretFile(t, "00000000-0000-0000-0000-000000000000")
	if _, err := resolveReal(t, cfg); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "AppRole") {
		t.Fatalf("bad secret id: %v", err)
	}
	// The policy check refuses a token lacking the user's own policy, and accepts alice's.
	cfg = base
	cfg.Getenv, cfg.PolicyTemplate = env{"VAULT_ADDR": v.Addr}.get, "workstation-claude-{user}"
	cfg.TokenFile = secretFile(t, v.Token(0, "default"))
	if _, err := resolveReal(t, cfg); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "workstation-claude-alice") {
		t.Fatalf("foreign token: %v", err)
	}
	cfg.TokenFile = secretFile(t, good)
	if _, err := resolveReal(t, cfg); err != nil {
		t.Fatalf("alice's own token with the policy check: %v", err)
	}
}

func TestRealVaultPeriodicTokenKeptAlive(t *testing.T) {
	t.Parallel()
	v := aliceVault(t, vaulttest.FakeToken())
	const period = 4 * time.Second
	kept := v.Token(period, "workstation-claude-alice")
	left := v.Token(period, "workstation-claude-alice")
	c, err := New(context.Background(), realConfig(t, v, kept))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Resolve(context.Background()); err != nil || !res.Renewable || res.TTL > period || res.TTL < period-2*time.Second {
		t.Fatalf("periodic token: %+v %v", res, err)
	}
	start := time.Now()
	renewals := keepAlive(t, c)
	// At start, then every 2/3 period or so: the fourth comes about two periods in.
	for i := 1; i <= 4; i++ {
		r := awaitReport(t, renewals, 2*period, fmt.Sprintf("renewal %d", i), func(Renewal) bool { return true })
		if r.Err != nil || r.Relogin || r.TTL != period {
			t.Errorf("renewal %d: %+v", i, r)
		}
	}
	lookup := func(tok string) error {
		cl, err := vaulttest.NewClient(v.Addr, tok)
		if err != nil {
			return err
		}
		_, err = cl.Auth().Token().LookupSelf()
		return err
	}
	// The token nobody renews, made with it, dies after one period: once it is gone, the one
	// kept alive is alive only by its renewals.
	for deadline := time.Now().Add(2 * period); lookup(left) == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the token nobody renewed is still alive after %v: the test proves nothing", time.Since(start))
		}
	}
	if err := lookup(kept); err != nil {
		t.Errorf("the kept-alive token died: %v", err)
	}
	if res, err := c.Resolve(context.Background()); err != nil || res.Outcome != Found {
		t.Errorf("resolve after %v: %v %v", time.Since(start), res.Outcome, err)
	}
	t.Logf("4 renewals, and the other token dead, after %v", time.Since(start).Round(time.Millisecond))
	cfg := realConfig(t, v, left)
	if _, err := resolveReal(t, cfg); !errors.Is(err, ErrDenied) {
		t.Errorf("expired periodic token: %v", err)
	}
}

// An AppRole token that reaches its max TTL cannot be renewed further: KeepAlive logs in again.
func TestRealVaultAppRoleLogsInAgain(t *testing.T) {
	t.Parallel()
	v := aliceVault(t, vaulttest.FakeToken())
	roleID, secretID := v.AppRoleWith("alice", map[string]any{"token_ttl": "3s", "token_max_ttl": "5s", "secret_id_num_uses": 0}, "workstation-claude-alice")
	cfg := Config{User: "alice", Timeout: 8 * time.Second, Getenv: env{"VAULT_ADDR": v.Addr}.get,
		AppRoleRoleID: roleID, AppRoleSecretIDFile: secretFile(t, secretID)}
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	reports := keepAlive(t, c)
	n := 0
	// The 5 s max TTL twice over: a re-login before each end.
	for i := 1; i <= 2; i++ {
		awaitReport(t, reports, 10*time.Second, fmt.Sprintf("re-login %d", i), func(r Renewal) bool {
			n++
			if r.Err != nil {
				t.Errorf("failure: %v", r.Err)
			}
			return r.Relogin
		})
	}
	if res, err := c.Resolve(context.Background()); err != nil || res.Outcome != Found {
		t.Errorf("resolve after %v: %v %v", time.Since(start), res.Outcome, err)
	}
	t.Logf("%d reports, 2 re-logins in %v", n, time.Since(start).Round(time.Millisecond))
}

// A token file whose token reaches its max TTL: KeepAlive cannot renew it and has nothing new to
// log in with, so it warns before the token dies, and reports denial after.
func TestRealVaultTokenFileAtItsEnd(t *testing.T) {
	t.Parallel()
	v := aliceVault(t, "")
	sec, err := v.Client.Auth().Token().Create(&vault.TokenCreateRequest{
		Policies: []string{"workstation-claude-alice"}, TTL: "6s", ExplicitMaxTTL: "9s"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(context.Background(), realConfig(t, v, sec.Auth.ClientToken))
	if err != nil {
		t.Fatal(err)
	}
	c.backoffMin, c.backoffMax = 200*time.Millisecond, time.Second
	// TTLs come in whole seconds and the watcher gives up 10-20 % of a lease before its end:
	// with a 6 s TTL and a 9 s max, it gives up at about 4 s or 7 s, 1.5 s or more before the
	// token dies, which leaves time for the warning.
	var warned, relogins int
	start := time.Now()
	reports := keepAlive(t, c)
	// Warned before the 9 s max TTL, denied after it.
	awaitReport(t, reports, 15*time.Second, "denial after a warning", func(r Renewal) bool {
		t.Logf("%v: %+v", time.Since(start).Round(10*time.Millisecond), r)
		switch {
		case r.Relogin:
			relogins++
		case r.Err != nil && strings.Contains(r.Err.Error(), "cannot be renewed any further"):
			warned++
		case errors.Is(r.Err, ErrDenied):
			if warned == 0 {
				t.Error("denied without a warning before")
			}
			return true
		}
		return false
	})
	if relogins != 0 {
		t.Errorf("%d re-logins with nothing new to log in with", relogins)
	}
	t.Logf("warned %d times before the end, denied after %v", warned, time.Since(start).Round(time.Millisecond))
}

func TestRealVaultSealedAndStopped(t *testing.T) {
	t.Parallel()
	v := aliceVault(t, vaulttest.FakeToken())
	// Long enough for the Vault client's own two retries of a 503 (about 1 s apart), so the
	// answer that comes back is "sealed", not our timeout.
	cfg := realConfig(t, v, v.Token(0, "workstation-claude-alice"))
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	v.Seal()
	start := time.Now()
	if _, err := c.Resolve(context.Background()); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "sealed") {
		t.Errorf("sealed: %v", err)
	}
	t.Logf("sealed: answered in %v", time.Since(start).Round(time.Millisecond))
	if _, err := New(context.Background(), cfg); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "sealed") {
		t.Errorf("login against a sealed server: %v", err)
	}
	v.Stop()
	start = time.Now()
	if _, err := c.Resolve(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("stopped: %v", err)
	}
	if took := time.Since(start); took > cfg.Timeout+time.Second {
		t.Errorf("stopped server: %v", took)
	} else {
		t.Logf("stopped: answered in %v", took.Round(time.Millisecond))
	}
	if _, err := New(context.Background(), cfg); !errors.Is(err, ErrUnavailable) {
		t.Errorf("login against a stopped server: %v", err)
	}
}
