package creds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
)

// Client is an authenticated Vault client for one user's token. Resolve and KeepAlive may run
// at the same time; KeepAlive at most once.
type Client struct {
	cfg  Config
	path string // MOUNT/PATH of the user's secret
	vc   *vault.Client
	hc   *http.Client // vc's, for Close

	// KeepAlive's pause after a failure grows from backoffMin to backoffMax (tests shorten it).
	backoffMin, backoffMax time.Duration

	mu  sync.Mutex // guards tok and vc's token: KeepAlive replaces them beside Resolve
	tok tokenState
}

// tokenState is what lookup-self and renewals tell about the Vault token in use.
type tokenState struct {
	auth      AuthSource
	token     Secret // the Vault token, redacted like a setup token if the Client is ever printed
	renewable bool
	ttl       time.Duration // 0: never expires (a root token)
}

// New builds a Vault client from the VAULT_* environment, as the Vault CLI does, and
// authenticates: the token file, VAULT_TOKEN, AppRole, the first that is available (see the
// package doc). It checks the token with lookup-self, so an expired or revoked token fails here
// as ErrDenied, and applies Config.PolicyTemplate. The whole is bounded by Config.Timeout.
func New(ctx context.Context, cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	path, err := cfg.SecretPath()
	if err != nil {
		return nil, err
	}
	if _, err := cfg.policy(); err != nil {
		return nil, err
	}
	if cfg.AppRoleRoleID != "" && cfg.AppRoleSecretIDFile == "" {
		return nil, fmt.Errorf("%w: an AppRole role id without a secret id file", ErrConfig)
	}
	vc, hc, err := newVaultClient(cfg.Getenv, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, path: path, vc: vc, hc: hc, backoffMin: time.Second, backoffMax: 5 * time.Minute}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := c.login(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// vaultEnv is every variable github.com/hashicorp/vault/api v1.23.0 reads from the process
// environment: Config.ReadEnvironment (called by DefaultConfig) and NewClient.
var vaultEnv = []string{
	vault.EnvVaultAddress, vault.EnvVaultAgentAddr, vault.EnvVaultMaxRetries, vault.EnvVaultCACert,
	vault.EnvVaultCACertBytes, vault.EnvVaultCAPath, vault.EnvVaultClientCert, vault.EnvVaultClientKey,
	vault.EnvRateLimit, vault.EnvVaultClientTimeout, vault.EnvVaultSkipVerify, vault.EnvVaultSRVLookup,
	vault.EnvVaultTLSServerName, vault.EnvHTTPProxy, vault.EnvVaultProxyAddr, vault.EnvVaultDisableRedirects,
	vault.EnvVaultToken, vault.EnvVaultNamespace, vault.EnvVaultHeaders,
}

// envMu serializes the brief use of the process environment by newVaultClient and clone.
var envMu sync.Mutex

// newVaultClient is api.DefaultConfig + api.NewClient with the VAULT_* variables taken from
// getenv. The Vault client reads only os.Getenv, so where getenv disagrees with the process
// environment (in tests; cmd/ passes the process's own environment, so never in production) the
// values are set in the process environment for the duration of the two calls and restored,
// under a lock. This reuses the client's own parsing of every variable instead of a copy of it.
func newVaultClient(getenv func(string) string, timeout time.Duration) (*vault.Client, *http.Client, error) {
	envMu.Lock()
	defer envMu.Unlock()
	defer overlayEnv(getenv)()

	vcfg := vault.DefaultConfig()
	if vcfg.Error != nil {
		return nil, nil, fmt.Errorf("%w: the VAULT_* environment (VAULT_CACERT, VAULT_CLIENT_TIMEOUT …): %v", ErrConfig, vcfg.Error)
	}
	// Timeout bounds each request (with its retries) as well as the whole; a smaller
	// VAULT_CLIENT_TIMEOUT wins, as in the CLI.
	vcfg.Timeout = min(vcfg.Timeout, timeout)
	vcfg.CheckRetry = checkRetry
	vc, err := vault.NewClient(vcfg)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: Vault client (VAULT_ADDR %q, VAULT_HEADERS): %v", ErrConfig, vcfg.Address, err)
	}
	// NewClient took VAULT_TOKEN on its own; the documented order puts the token file first,
	// so the token is chosen by authenticate, explicitly.
	vc.ClearToken()
	// After NewClient, which type-asserts the transport to *http.Transport (TLS and unix-socket
	// set-up); the clones share HttpClient and CheckRetry, so the guard covers them too.
	vcfg.HttpClient.Transport = guard{next: vcfg.HttpClient.Transport}
	return vc, vcfg.HttpClient, nil
}

// overlayEnv makes the process environment agree with getenv on vaultEnv and returns the undo.
func overlayEnv(getenv func(string) string) (restore func()) {
	type saved struct {
		name, value string
		set         bool
	}
	var undo []saved
	for _, name := range vaultEnv {
		want := getenv(name)
		have, set := os.LookupEnv(name)
		if want == have {
			continue
		}
		undo = append(undo, saved{name, have, set})
		if want == "" {
			os.Unsetenv(name)
		} else {
			os.Setenv(name, want)
		}
	}
	return func() {
		for _, s := range undo {
			if s.set {
				os.Setenv(s.name, s.value)
			} else {
				os.Unsetenv(s.name)
			}
		}
	}
}

// clone is a copy of the client (address, TLS, namespace and headers) holding tok, or no token.
// api.Client.Clone calls NewClient, which reads the process environment again: under the same
// overlay as newVaultClient.
func (c *Client) clone(tok Secret) (*vault.Client, error) {
	envMu.Lock()
	defer envMu.Unlock()
	defer overlayEnv(c.cfg.Getenv)()
	lc, err := c.vc.CloneWithHeaders()
	if err != nil {
		return nil, fmt.Errorf("%w: Vault client: %v", ErrConfig, err)
	}
	lc.ClearToken()
	if !tok.IsZero() {
		lc.SetToken(tok.Reveal())
	}
	return lc, nil
}

// Close releases the client's idle connections. It does not revoke the Vault token: the token
// belongs to the user (a token file) or to the operator (AppRole), and the next start needs it.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// login authenticates and checks the resulting token; New and KeepAlive's re-login share it.
func (c *Client) login(ctx context.Context) error {
	auth, tok, err := c.authenticate(ctx)
	if err != nil {
		return err
	}
	st, err := c.lookupSelf(ctx, auth, tok)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.vc.SetToken(tok.Reveal())
	c.tok = st
	c.mu.Unlock()
	return nil
}

// authenticate returns a Vault token from the first available method. It changes no state: the
// token is committed by login once lookup-self accepts it.
func (c *Client) authenticate(ctx context.Context) (AuthSource, Secret, error) {
	if f := c.cfg.TokenFile; f != "" {
		tok, err := readSecretFile(ctx, f, "Vault token file")
		switch {
		case err == nil:
			return AuthTokenFile, tok, nil
		case errors.Is(err, fs.ErrNotExist) && !c.cfg.TokenFileExplicit:
			// The default location, and nothing there: the next method. (A symlink there is
			// not "nothing": it is refused, not skipped.)
		default:
			return "", Secret{}, fileError(ctx, err)
		}
	}
	if tok := strings.TrimSpace(c.cfg.Getenv(vault.EnvVaultToken)); tok != "" {
		if strings.IndexFunc(tok, unprintable) >= 0 {
			return "", Secret{}, fmt.Errorf("%w: VAULT_TOKEN has whitespace or control characters inside: not one token", ErrConfig)
		}
		return AuthEnv, NewSecret(tok), nil
	}
	if c.cfg.AppRoleRoleID != "" {
		tok, err := c.loginAppRole(ctx)
		return AuthAppRole, tok, err
	}
	where := "no token file configured"
	if c.cfg.TokenFile != "" {
		where = "no token file at " + c.cfg.TokenFile
	}
	return "", Secret{}, fmt.Errorf("%w: no way to authenticate to Vault: %s, VAULT_TOKEN is unset, no AppRole role id", ErrConfig, where)
}

// loginAppRole logs in with api/auth/approle. The secret id file is read here rather than by
// the approle package, so that an unreadable file is ErrConfig naming the file, not a login
// failure.
func (c *Client) loginAppRole(ctx context.Context) (Secret, error) {
	sid, err := readSecretFile(ctx, c.cfg.AppRoleSecretIDFile, "AppRole secret id file")
	if err != nil {
		return Secret{}, fileError(ctx, err)
	}
	a, err := approle.NewAppRoleAuth(c.cfg.AppRoleRoleID, &approle.SecretID{FromString: sid.Reveal()})
	if err != nil {
		return Secret{}, fmt.Errorf("%w: AppRole: %v", ErrConfig, err)
	}
	// A clone, so that the login neither sends nor replaces the token Resolve may be using.
	lc, err := c.clone(Secret{})
	if err != nil {
		return Secret{}, err
	}
	s, err := lc.Auth().Login(ctx, a)
	if err != nil {
		return Secret{}, classify("AppRole login (auth/approle/login)", err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return Secret{}, fmt.Errorf("%w: AppRole login (auth/approle/login) returned no token", ErrUnavailable)
	}
	return NewSecret(s.Auth.ClientToken), nil
}

func unprintable(r rune) bool { return r <= ' ' || r == 0x7f }

// maxSecretFile bounds a token or secret id file: the largest Vault tokens (batch) are a few
// hundred bytes.
const maxSecretFile = 16 << 10

// readSecretFile reads a file holding one token, without its surrounding whitespace, by
// readPrivateFile's rules (what names it), and gives up when ctx ends. Errors name the file and
// never its content.
func readSecretFile(ctx context.Context, path, what string) (Secret, error) {
	b, err := withContext(ctx, func() ([]byte, error) { return readPrivateFile(path, what, maxSecretFile, nil) })
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return Secret{}, fmt.Errorf("%s %s: not read before the start was called off or timed out: %w", what, path, err)
	}
	if err != nil {
		return Secret{}, err
	}
	v := strings.TrimSpace(string(b))
	switch {
	case v == "":
		return Secret{}, fmt.Errorf("%s %s: empty", what, path)
	case strings.IndexFunc(v, unprintable) >= 0:
		return Secret{}, fmt.Errorf("%s %s: whitespace or control characters inside: not one token", what, path)
	}
	return NewSecret(v), nil
}

// fileError classes a failure to read a token or secret id file: the operator's to fix
// (ErrConfig), unless the read did not finish in time (a hung file system: ErrUnavailable, so
// that the fallback covers it and systemd retries) or was called off (a stop).
func fileError(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w: %w (a hung file system?)", ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %w", ErrConfig, err)
}

// lookupSelf checks tok (auth/token/lookup-self, allowed by Vault's default policy) on a clone
// of the client, learns whether it can be renewed and its TTL, and applies the policy check.
func (c *Client) lookupSelf(ctx context.Context, auth AuthSource, tok Secret) (tokenState, error) {
	what := "the Vault token from " + c.describe(auth)
	lc, err := c.clone(tok)
	if err != nil {
		return tokenState{}, err
	}
	s, err := lc.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return tokenState{}, classify(what+" (auth/token/lookup-self)", err)
	}
	if s == nil || s.Data == nil {
		return tokenState{}, fmt.Errorf("%w: %s (auth/token/lookup-self): empty answer", ErrUnavailable, what)
	}
	st := tokenState{auth: auth, token: tok}
	st.ttl, _ = s.TokenTTL()
	st.renewable, _ = s.TokenIsRenewable()
	want, _ := c.cfg.policy()
	if want != "" {
		policies, _ := s.TokenPolicies()
		if ids, ok := s.Data["identity_policies"].([]any); ok {
			for _, p := range ids {
				if p, ok := p.(string); ok {
					policies = append(policies, p)
				}
			}
		}
		if !slices.Contains(policies, want) {
			return tokenState{}, fmt.Errorf("%w: %s lacks policy %s (it has %s): a token issued for somebody else", ErrDenied, what, want, strings.Join(policies, ","))
		}
	}
	return st, nil
}

func (c *Client) describe(auth AuthSource) string {
	switch auth {
	case AuthTokenFile:
		return "token file " + c.cfg.TokenFile
	case AuthAppRole:
		return "AppRole login"
	}
	return string(auth)
}

func (c *Client) state() tokenState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tok
}

// Resolve reads the user's secret once, within Config.Timeout, and returns a distinct Outcome
// or an error of one of the classes (see the package doc). The fields of Result known before an
// error are set on it too.
func (c *Client) Resolve(ctx context.Context) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	st := c.state()
	res := Result{Auth: st.auth, Path: c.path, Renewable: st.renewable, TTL: st.ttl}
	mount, version, guessed, err := c.mountOf(ctx)
	if err != nil {
		return res, err
	}
	res.Mount, res.KVVersion = mount, version
	res.MountGuessed = guessed
	rel := strings.TrimPrefix(strings.TrimPrefix(c.path, mount), "/")
	what := "read " + c.path
	status, isJSON, body, err := c.readRaw(ctx, mount+"/data/"+rel)
	if err != nil {
		return res, classify(what, err)
	}
	kv, err := judgeRead(what, status, isJSON, body, c.cfg.Field, guessed)
	if err != nil {
		return res, err
	}
	res.Outcome, res.Version = kv.Outcome, kv.Version
	res.Created, res.ExpiresAt = kv.Created, kv.ExpiresAt
	if kv.Outcome != Found {
		return res, nil
	}
	if err := ValidateToken(kv.Value); err != nil {
		return res, fmt.Errorf("%s field %s: %w", c.path, c.cfg.Field, err)
	}
	res.Token = NewSecret(kv.Value)
	return res, nil
}

// readRaw GETs a Vault path and returns the status, whether the body is declared JSON, and the
// body (bounded by the client's transport, see guard). A 404 is an answer, not an error: Vault's
// 404s differ in what they mean (judgeRead). Any other error status is the error.
func (c *Client) readRaw(ctx context.Context, path string) (int, bool, []byte, error) {
	// The raw functions skip the client's own per-request timeout (VAULT_CLIENT_TIMEOUT):
	// applied here as Logical().Read would.
	if t := c.vc.ClientTimeout(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	resp, err := c.vc.Logical().ReadRawWithContext(ctx, path)
	if resp != nil {
		defer resp.Body.Close()
	}
	var re *vault.ResponseError
	if err != nil && !(errors.As(err, &re) && re.StatusCode == http.StatusNotFound && resp != nil) {
		return 0, false, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false, nil, err
	}
	return resp.StatusCode, strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"), body, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case bool:
		return "boolean"
	case json.Number, float64:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// mountOf finds the mount of the user's path and its KV version the way `vault kv get` does: it
// asks sys/internal/ui/mounts/PATH, which answers any token with a capability under the mount.
// Vault answers 403 both when the token has none there and when there is no such mount (seen on
// 1.19.0 after `vault secrets move`, even for a root token); an operator may also deny the path
// outright. Then the first path segment is taken as a KV v2 mount, guessed is true, and the read
// decides: judgeRead trusts no bare "no secret" from a guessed mount.
func (c *Client) mountOf(ctx context.Context) (mount string, version int, guessed bool, err error) {
	first, _, _ := strings.Cut(c.path, "/")
	what := "find the mount of " + c.path + " (sys/internal/ui/mounts)"
	s, err := c.vc.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+c.path)
	var re *vault.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
		return first, 2, true, nil
	}
	if err != nil {
		return "", 0, false, classify(what, err)
	}
	if s == nil || s.Data == nil {
		return "", 0, false, fmt.Errorf("%w: %s: an answer without the mount", ErrUnavailable, what)
	}
	mount = strings.Trim(fmt.Sprint(s.Data["path"]), "/")
	if mount == "" || mount == "<nil>" || !strings.HasPrefix(c.path, mount+"/") {
		return "", 0, false, fmt.Errorf("%w: %s: Vault names mount %q, which does not hold the path", ErrUnavailable, what, mount)
	}
	if t, _ := s.Data["type"].(string); t != "" && t != "kv" {
		return "", 0, false, fmt.Errorf("%w: %s is on a %s mount (%s/), not KV v2", ErrConfig, c.path, t, mount)
	}
	version = 1
	if opts, ok := s.Data["options"].(map[string]any); ok && fmt.Sprint(opts["version"]) == "2" {
		version = 2
	}
	if version != 2 {
		return "", 0, false, fmt.Errorf("%w: mount %s/ is KV version %d; t3-supervise needs KV v2 (versions tell a rotation from a deletion): `vault kv enable-versioning %s/`", ErrConfig, mount, version, mount)
	}
	return mount, version, false, nil
}

// classify maps a Vault client error to an error class. Only Vault's answer that access is
// refused is ErrDenied; everything else (no connection, TLS, a sealed or failing server, a
// timeout, a body that is not JSON, a redirect loop) is ErrUnavailable: transient, never an
// opt-out. It uses the status and Vault's error list, never the raw body (a proxy could echo
// anything) or the request (it carries the token header).
func classify(what string, err error) error {
	var re *vault.ResponseError
	if errors.As(err, &re) {
		detail := strings.Join(re.Errors, "; ")
		if detail == "" {
			detail = http.StatusText(re.StatusCode)
		}
		detail = strings.Join(strings.Fields(detail), " ") // Vault's multierror has newlines and tabs
		switch {
		case re.StatusCode == http.StatusForbidden || re.StatusCode == http.StatusUnauthorized:
			return fmt.Errorf("%w: %s: permission denied (HTTP %d: %s)", ErrDenied, what, re.StatusCode, detail)
		case re.StatusCode == http.StatusBadRequest && strings.Contains(what, "login"):
			// Auth methods refuse a login with 400: AppRole says "invalid role or secret ID".
			return fmt.Errorf("%w: %s refused (HTTP 400: %s)", ErrDenied, what, detail)
		case re.StatusCode == http.StatusServiceUnavailable:
			return fmt.Errorf("%w: %s: Vault is sealed or in standby (HTTP 503: %s)", ErrUnavailable, what, detail)
		}
		return fmt.Errorf("%w: %s: HTTP %d: %s", ErrUnavailable, what, re.StatusCode, detail)
	}
	// The messages of the JSON and mapstructure errors quote what they choke on, a fragment of
	// the body: only their position is reported.
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var ue *url.Error
	switch {
	case errors.Is(err, errAnswerTooLarge):
		return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, errAnswerTooLarge)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %s: no answer within the timeout", ErrUnavailable, what)
	case errors.As(err, &se):
		return fmt.Errorf("%w: %s: the answer is not Vault's JSON (syntax error at byte %d)", ErrUnavailable, what, se.Offset)
	case errors.As(err, &te):
		return fmt.Errorf("%w: %s: the answer is not Vault's JSON (a %s where %s was expected)", ErrUnavailable, what, te.Value, te.Type)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Errorf("%w: %s: the answer is not Vault's JSON (truncated)", ErrUnavailable, what)
	case errors.As(err, &ue):
		return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, ue) // method, URL, network or TLS cause
	case strings.Contains(err.Error(), "error parsing secret"):
		return fmt.Errorf("%w: %s: the answer is not a KV v2 secret", ErrUnavailable, what)
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
}
