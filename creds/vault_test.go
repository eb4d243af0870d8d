package creds

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"t3-supervise/internal/vaulttest"
)

// Against a real Vault dev server (tier "vault"): KV v2 at secret/, token files, VAULT_TOKEN,
// AppRole with a per-user policy, periodic tokens, a sealed and a stopped server.

func userPath(u string) string { return "workstation/claude-users/" + u }

func tokenFile(t *testing.T, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vault-token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func resolveReal(t *testing.T, cfg Config) (Result, error) {
	t.Helper()
	c, err := New(context.Background(), cfg)
	if err != nil {
		return Result{}, err
	}
	return c.Resolve(context.Background())
}

func TestRealVaultOutcomes(t *testing.T) {
	v := vaulttest.Start(t)
	v.Policy("workstation-claude-alice", userPath("alice"))
	tok := vaulttest.FakeToken()
	vt := v.Token(0, "workstation-claude-alice")
	cfg := Config{User: "alice", Address: v.Addr, TokenFile: tokenFile(t, vt), Timeout: 5 * time.Second, Getenv: func(string) string { return "" }}

	if res, err := resolveReal(t, cfg); err != nil || res.Outcome != NoSecret {
		t.Fatalf("no secret yet: %v %v", res.Outcome, err)
	}
	v.Put(userPath("alice"), map[string]any{"other": "x"})
	if res, err := resolveReal(t, cfg); err != nil || res.Outcome != NoField {
		t.Fatalf("no field: %v %v", res.Outcome, err)
	}
	v.Put(userPath("alice"), map[string]any{"setup_token": ""})
	if res, err := resolveReal(t, cfg); err != nil || res.Outcome != NoField {
		t.Fatalf("empty field: %v %v", res.Outcome, err)
	}
	v.Put(userPath("alice"), map[string]any{"setup_token": tok})
	res, err := resolveReal(t, cfg)
	if err != nil || res.Outcome != Found || res.Token.Reveal() != tok || res.Version != 3 || res.Mount != "secret" || res.KVVersion != 2 || res.Auth != AuthTokenFile {
		t.Fatalf("found: %+v %v", res, err)
	}
	v.Put(userPath("alice"), map[string]any{"setup_token": "not-a-token"})
	if _, err := resolveReal(t, cfg); !errors.Is(err, ErrMalformed) || strings.Contains(err.Error(), "not-a-token") {
		t.Fatalf("malformed: %v", err)
	}
	v.Put(userPath("alice"), map[string]any{"setup_token": tok})
	if err := v.Client.KVv2("secret").Delete(context.Background(), userPath("alice")); err != nil {
		t.Fatal(err)
	}
	if res, err := resolveReal(t, cfg); err != nil || res.Outcome != Deleted || res.Version != 5 {
		t.Fatalf("deleted: %+v %v", res, err)
	}
	v.Put(userPath("alice"), map[string]any{"setup_token": tok})
	if err := v.Client.KVv2("secret").Destroy(context.Background(), userPath("alice"), []int{6}); err != nil {
		t.Fatal(err)
	}
	if res, err := resolveReal(t, cfg); err != nil || res.Outcome != Destroyed {
		t.Fatalf("destroyed: %+v %v", res, err)
	}
}

func TestRealVaultAuthOrderAndDenial(t *testing.T) {
	v := vaulttest.Start(t)
	v.Policy("workstation-claude-alice", userPath("alice"))
	v.Put(userPath("alice"), map[string]any{"setup_token": vaulttest.FakeToken()})
	v.Put(userPath("bob"), map[string]any{"setup_token": vaulttest.FakeToken()})
	good := v.Token(0, "workstation-claude-alice")
	env := func(tok string) func(string) string {
		return func(k string) string {
			if k == "VAULT_TOKEN" {
				return tok
			}
			return ""
		}
	}
	base := Config{User: "alice", Address: v.Addr, Timeout: 5 * time.Second}

	// The token file wins over VAULT_TOKEN: a garbage VAULT_TOKEN does not matter.
	cfg := base
	cfg.TokenFile, cfg.Getenv = tokenFile(t, good), env("hvs.garbage")
	if res, err := resolveReal(t, cfg); err != nil || res.Auth != AuthTokenFile || res.Outcome != Found {
		t.Fatalf("token file first: %+v %v", res, err)
	}
	// No file at the default location: VAULT_TOKEN.
	cfg.TokenFile = filepath.Join(t.TempDir(), "absent")
	cfg.Getenv = env(good)
	if res, err := resolveReal(t, cfg); err != nil || res.Auth != AuthEnv {
		t.Fatalf("VAULT_TOKEN: %+v %v", res, err)
	}
	// A revoked token is denied at lookup-self.
	bad := v.Token(0, "workstation-claude-alice")
	if err := v.Client.Auth().Token().RevokeTree(bad); err != nil {
		t.Fatal(err)
	}
	cfg.Getenv = env(bad)
	if _, err := resolveReal(t, cfg); !errors.Is(err, ErrDenied) {
		t.Fatalf("revoked: %v", err)
	}

	// AppRole whose policy allows only alice's own path: bob's path is denied, and says so.
	roleID, secretID := v.AppRole("alice", "workstation-claude-alice")
	sidFile := tokenFile(t, secretID)
	cfg = base
	cfg.TokenFile, cfg.Getenv = filepath.Join(t.TempDir(), "absent"), env("")
	cfg.AppRoleRoleID, cfg.AppRoleSecretIDFile = roleID, sidFile
	if res, err := resolveReal(t, cfg); err != nil || res.Auth != AuthAppRole || res.Outcome != Found {
		t.Fatalf("approle: %+v %v", res, err)
	}
	cfg.User = "bob"
	_, err := resolveReal(t, cfg)
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "claude-users/bob") {
		t.Fatalf("bob's path with alice's role: %v", err)
	}
	// A wrong secret id is a denied login.
	cfg.User = "alice"
	cfg.AppRoleSecretIDFile = tokenFile(t, "00000000-0000-0000-0000-000000000000")
	if _, err := resolveReal(t, cfg); !errors.Is(err, ErrDenied) {
		t.Fatalf("bad secret id: %v", err)
	}
	// The policy check refuses a token lacking the user's own policy.
	cfg = base
	cfg.TokenFile, cfg.Getenv, cfg.PolicyTemplate = tokenFile(t, v.Token(0, "default")), env(""), "workstation-claude-{user}"
	if _, err := resolveReal(t, cfg); !errors.Is(err, ErrDenied) {
		t.Fatalf("foreign token: %v", err)
	}
}

func TestRealVaultPeriodicTokenKeptAlive(t *testing.T) {
	v := vaulttest.Start(t)
	v.Policy("workstation-claude-alice", userPath("alice"))
	period := 4 * time.Second
	kept := v.Token(period, "workstation-claude-alice")
	left := v.Token(period, "workstation-claude-alice")
	cfg := Config{User: "alice", Address: v.Addr, TokenFile: tokenFile(t, kept), Timeout: 5 * time.Second, Getenv: func(string) string { return "" }}
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	renewals := make(chan Renewal, 100)
	done := make(chan struct{})
	go func() { c.KeepAlive(ctx, func(r Renewal) { renewals <- r }); close(done) }()
	time.Sleep(3*period + time.Second)
	cancel()
	<-done
	n := 0
	for len(renewals) > 0 {
		r := <-renewals
		if r.Err != nil {
			t.Errorf("renewal failed: %v", r.Err)
		}
		n++
	}
	if n < 3 {
		t.Errorf("%d renewals in %v of a %v periodic token", n, 3*period+time.Second, period)
	}
	lookup := func(tok string) error {
		cl, _ := vault.NewClient(&vault.Config{Address: v.Addr})
		cl.SetToken(tok)
		_, err := cl.Auth().Token().LookupSelf()
		return err
	}
	if err := lookup(kept); err != nil {
		t.Errorf("the kept-alive token died: %v", err)
	}
	if err := lookup(left); err == nil {
		t.Error("the token nobody renewed is still alive after 3 periods: the test proves nothing")
	}
}

func TestRealVaultSealedAndStopped(t *testing.T) {
	v := vaulttest.Start(t)
	v.Policy("workstation-claude-alice", userPath("alice"))
	v.Put(userPath("alice"), map[string]any{"setup_token": vaulttest.FakeToken()})
	// Long enough for the Vault client's own two retries of a 503 (about 1 s apart), so the
	// answer that comes back is "sealed", not our timeout.
	cfg := Config{User: "alice", Address: v.Addr, TokenFile: tokenFile(t, v.Token(0, "workstation-claude-alice")),
		Timeout: 8 * time.Second, Getenv: func(string) string { return "" }}
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Client.Sys().Seal(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resolve(context.Background()); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "sealed") {
		t.Errorf("sealed: %v", err)
	}
	v.Stop()
	start := time.Now()
	if _, err := c.Resolve(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("stopped: %v", err)
	}
	if took := time.Since(start); took > cfg.Timeout+time.Second {
		t.Errorf("stopped server: %v", took)
	}
	if _, err := New(context.Background(), cfg); !errors.Is(err, ErrUnavailable) {
		t.Errorf("login against a stopped server: %v", err)
	}
}
