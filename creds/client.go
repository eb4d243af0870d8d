package creds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
)

// Client is an authenticated Vault client for one user's token.
type Client struct {
	mu    sync.Mutex // guards the token state below: KeepAlive runs beside Resolve
	cfg   Config
	vc    *vault.Client
	path  string
	auth  AuthSource
	login *vault.Secret // the AppRole login, for re-login when the token runs out
	ttl   time.Duration
	renew bool
}

// New builds a Vault client from the environment (as the Vault CLI does) and authenticates,
// trying the token file, VAULT_TOKEN and AppRole in that order.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Field == "" {
		cfg.Field = DefaultField
	}
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	path, err := cfg.SecretPath()
	if err != nil {
		return nil, err
	}
	vcfg := vault.DefaultConfig() // VAULT_ADDR, VAULT_CACERT, VAULT_CLIENT_TIMEOUT, VAULT_MAX_RETRIES ...
	if vcfg.Error != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, vcfg.Error)
	}
	if cfg.Address != "" {
		vcfg.Address = cfg.Address
	}
	vcfg.Timeout = cfg.Timeout
	vc, err := vault.NewClient(vcfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	// NewClient picks up VAULT_TOKEN on its own; the documented order puts the token file first.
	vc.ClearToken()
	c := &Client{cfg: cfg, vc: vc, path: path}

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := c.authenticate(ctx); err != nil {
		return nil, err
	}
	if err := c.lookupSelf(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Close releases the client. It does not revoke the token: it belongs to the user.
func (c *Client) Close() {}

// Auth is how the client authenticated.
func (c *Client) Auth() AuthSource { return c.auth }

func (c *Client) authenticate(ctx context.Context) error {
	if f := c.cfg.TokenFile; f != "" {
		b, err := os.ReadFile(f)
		switch {
		case err == nil:
			tok := strings.TrimSpace(string(b))
			if tok == "" || strings.ContainsAny(tok, " \n\r\t") {
				return fmt.Errorf("%w: Vault token file %s is empty or not one token", ErrConfig, f)
			}
			c.vc.SetToken(tok)
			c.auth = AuthTokenFile
			return nil
		case c.cfg.TokenFileExplicit || !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("%w: Vault token file: %v", ErrConfig, err)
		}
	}
	if tok := c.cfg.Getenv("VAULT_TOKEN"); tok != "" {
		c.vc.SetToken(tok)
		c.auth = AuthEnv
		return nil
	}
	if c.cfg.AppRoleRoleID != "" {
		return c.loginAppRole(ctx)
	}
	return fmt.Errorf("%w: no Vault auth: no token file at %s, no VAULT_TOKEN, no --approle-role-id", ErrConfig, c.cfg.TokenFile)
}

func (c *Client) loginAppRole(ctx context.Context) error {
	if _, err := os.Stat(c.cfg.AppRoleSecretIDFile); err != nil {
		return fmt.Errorf("%w: AppRole secret id file: %v", ErrConfig, err)
	}
	a, err := approle.NewAppRoleAuth(c.cfg.AppRoleRoleID, &approle.SecretID{FromFile: c.cfg.AppRoleSecretIDFile})
	if err != nil {
		return fmt.Errorf("%w: AppRole: %v", ErrConfig, err)
	}
	s, err := c.vc.Auth().Login(ctx, a)
	if err != nil {
		return classify("AppRole login", err)
	}
	if s == nil || s.Auth == nil {
		return fmt.Errorf("%w: AppRole login returned no token", ErrUnavailable)
	}
	c.mu.Lock()
	c.login, c.auth = s, AuthAppRole
	c.mu.Unlock()
	return nil
}

// lookupSelf checks the token (an expired or revoked one is denied here, not later with a
// confusing read error), learns whether it can be renewed, and enforces PolicyTemplate.
func (c *Client) lookupSelf(ctx context.Context) error {
	s, err := c.vc.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return classify(fmt.Sprintf("Vault token from %s (lookup-self)", c.auth), err)
	}
	if s == nil {
		return fmt.Errorf("%w: lookup-self returned nothing", ErrUnavailable)
	}
	c.mu.Lock()
	c.ttl, _ = s.TokenTTL()
	c.renew, _ = s.TokenIsRenewable()
	c.mu.Unlock()
	if c.cfg.PolicyTemplate != "" {
		want := strings.ReplaceAll(c.cfg.PolicyTemplate, "{user}", c.cfg.User)
		policies, _ := s.TokenPolicies()
		if !slices.Contains(policies, want) {
			return fmt.Errorf("%w: the Vault token from %s lacks policy %s (has %v): a token issued for somebody else", ErrDenied, c.auth, want, policies)
		}
	}
	return nil
}

// Resolve reads the user's secret once, within the configured timeout.
func (c *Client) Resolve(ctx context.Context) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	c.mu.Lock()
	res := Result{Auth: c.auth, Path: c.path, Renewable: c.renew, TTL: c.ttl}
	c.mu.Unlock()
	mount, version, err := c.mountOf(ctx)
	if err != nil {
		return res, err
	}
	res.Mount, res.KVVersion = mount, version
	rel := strings.TrimPrefix(strings.TrimPrefix(c.path, mount), "/")
	s, err := c.vc.KVv2(mount).Get(ctx, rel)
	if errors.Is(err, vault.ErrSecretNotFound) {
		res.Outcome = NoSecret
		return res, nil
	}
	if err != nil {
		return res, classify("read "+c.path, err)
	}
	if md := s.VersionMetadata; md != nil {
		res.Version = md.Version
		switch {
		case md.Destroyed:
			res.Outcome = Destroyed
			return res, nil
		case !md.DeletionTime.IsZero():
			res.Outcome = Deleted
			return res, nil
		}
	}
	raw, ok := s.Data[c.cfg.Field]
	if !ok || raw == nil || raw == "" {
		res.Outcome = NoField
		return res, nil
	}
	v, ok := raw.(string)
	if !ok {
		return res, fmt.Errorf("%w: %s field %s is a %T, not a string", ErrMalformed, c.path, c.cfg.Field, raw)
	}
	if err := ValidateToken(v); err != nil {
		return res, fmt.Errorf("%w: %s field %s: %v", ErrMalformed, c.path, c.cfg.Field, err)
	}
	res.Outcome, res.Token = Found, NewSecret(v)
	return res, nil
}

// mountOf finds the mount of the user's path and its KV version the way the Vault CLI does
// (`vault kv get` asks sys/internal/ui/mounts/PATH, which the default policy allows). A token
// without that permission falls back to the first path segment, assumed KV v2.
func (c *Client) mountOf(ctx context.Context) (string, int, error) {
	first, _, _ := strings.Cut(c.path, "/")
	s, err := c.vc.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+c.path)
	var re *vault.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
		return first, 2, nil
	}
	if err != nil {
		return "", 0, classify("find the mount of "+c.path, err)
	}
	if s == nil || s.Data == nil {
		return first, 2, nil
	}
	mount, _ := s.Data["path"].(string)
	mount = strings.TrimSuffix(mount, "/")
	if mount == "" {
		mount = first
	}
	if t, _ := s.Data["type"].(string); t != "" && t != "kv" {
		return "", 0, fmt.Errorf("%w: %s is on a %s mount, not KV", ErrConfig, c.path, t)
	}
	version := 1
	if opts, ok := s.Data["options"].(map[string]any); ok {
		if v, _ := opts["version"].(string); v == "2" {
			version = 2
		}
	}
	if version != 2 {
		return "", 0, fmt.Errorf("%w: mount %s/ is KV version %d; t3-supervise needs KV v2 (versions tell a rotation from a deletion)", ErrConfig, mount, version)
	}
	return mount, version, nil
}

// classify maps a Vault client error to an error class. Only an answer from Vault that
// access is refused is ErrDenied; everything else — no connection, TLS, a sealed or failing
// server, a timeout, a body that is not JSON — is ErrUnavailable: transient, never an opt-out.
func classify(what string, err error) error {
	var re *vault.ResponseError
	if errors.As(err, &re) {
		switch {
		case re.StatusCode == http.StatusForbidden || re.StatusCode == http.StatusUnauthorized:
			return fmt.Errorf("%w: %s: permission denied (HTTP %d)", ErrDenied, what, re.StatusCode)
		case re.StatusCode == http.StatusBadRequest && strings.Contains(strings.Join(re.Errors, " "), "invalid"):
			// AppRole answers 400 "invalid role or secret ID".
			return fmt.Errorf("%w: %s: %s (HTTP 400)", ErrDenied, what, strings.Join(re.Errors, "; "))
		case re.StatusCode == http.StatusServiceUnavailable:
			return fmt.Errorf("%w: %s: Vault is sealed or in standby (HTTP 503)", ErrUnavailable, what)
		}
		detail := strings.Join(re.Errors, "; ")
		if detail == "" {
			detail = http.StatusText(re.StatusCode)
		}
		return fmt.Errorf("%w: %s: HTTP %d %s", ErrUnavailable, what, re.StatusCode, detail)
	}
	var se *json.SyntaxError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %s: no answer within the timeout", ErrUnavailable, what)
	case errors.As(err, &se):
		return fmt.Errorf("%w: %s: malformed response: %v", ErrUnavailable, what, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
}

// Renewal is one outcome of keeping the Vault token alive.
type Renewal struct {
	TTL time.Duration // the token's TTL after a successful renewal
	Err error         // a failed renewal or re-login
}

// KeepAlive renews a renewable token — a periodic token dies after its period unless renewed,
// and the supervisor runs for weeks — through api.LifetimeWatcher (renew-self at about two
// thirds of the TTL, with jitter), until ctx ends. When the token cannot be renewed any longer,
// an AppRole client logs in again; a token from a file or VAULT_TOKEN is re-read from there.
// Failures back off exponentially with jitter, capped at 5 minutes: never a request storm.
func (c *Client) KeepAlive(ctx context.Context, report func(Renewal)) error {
	backoff := time.Second
	for {
		c.mu.Lock()
		secret := c.login
		if secret == nil {
			secret = &vault.Secret{Auth: &vault.SecretAuth{ClientToken: c.vc.Token(), Renewable: c.renew, LeaseDuration: int(c.ttl.Seconds())}}
		}
		c.mu.Unlock()
		if !secret.Auth.Renewable && c.auth != AuthAppRole {
			<-ctx.Done() // nothing to renew: a root or non-renewable token lives as long as it lives
			return nil
		}
		w, err := c.vc.NewLifetimeWatcher(&vault.LifetimeWatcherInput{Secret: secret})
		if err != nil {
			return err
		}
		go w.Start()
		err = c.watch(ctx, w, report)
		w.Stop()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			report(Renewal{Err: err})
		}
		// The watcher gave up: the token is at its end. Get a fresh one.
		if rerr := c.reauth(ctx); rerr != nil {
			report(Renewal{Err: rerr})
			sleep := backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, 5*time.Minute)
			select {
			case <-time.After(sleep):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		backoff = time.Second
	}
}

func (c *Client) watch(ctx context.Context, w *vault.LifetimeWatcher, report func(Renewal)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.DoneCh():
			return err
		case r := <-w.RenewCh():
			var ttl time.Duration
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				ttl = time.Duration(r.Secret.Auth.LeaseDuration) * time.Second
				c.mu.Lock()
				c.ttl = ttl
				c.mu.Unlock()
			}
			report(Renewal{TTL: ttl})
		}
	}
}

func (c *Client) reauth(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	c.vc.ClearToken()
	c.mu.Lock()
	c.login = nil
	c.mu.Unlock()
	if err := c.authenticate(ctx); err != nil {
		return err
	}
	return c.lookupSelf(ctx)
}
