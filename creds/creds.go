// Package creds resolves a user's own long-lived Claude setup token from HashiCorp Vault, and
// keeps the copy that the user's other sessions read (the env file).
//
// # Where the token lives
//
// A KV v2 secret at the user's own path, by default secret/workstation/claude-users/USER, field
// setup_token (a value made by `claude setup-token`, starting sk-ant-oat01-). The path template
// must contain {user}: one token shared by several users is forbidden. The mount and its KV
// version are asked from Vault the way `vault kv get` does (sys/internal/ui/mounts); a KV v1
// mount is refused, because only versions tell a rotation from a deletion.
//
// # How the supervisor authenticates to Vault
//
// The first method that is available wins; a later one is not tried when an earlier one fails:
//
//  1. A token file: ~/.config/claude-auth-sync/vault-token (the per-user periodic token the old
//     sync script used), or $CREDENTIALS_DIRECTORY/vault-token when an operator loads one from a
//     root-owned path with systemd's LoadCredential= (never from the user's home: systemd reads
//     it as root and follows symlinks). A missing file at a default location is skipped; a file
//     the operator named must exist. Token and secret id files are read as the user, by the env
//     file's rules: a regular file, no symlink followed, no FIFO, bounded, given up on timeout.
//  2. VAULT_TOKEN.
//  3. AppRole: a role id and a file holding the secret id.
//
// VAULT_ADDR, VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY, VAULT_NAMESPACE,
// VAULT_SKIP_VERIFY, VAULT_TLS_SERVER_NAME, VAULT_CLIENT_TIMEOUT, VAULT_MAX_RETRIES and the
// other VAULT_* variables of the Vault CLI mean what they mean there: the Vault Go client
// (github.com/hashicorp/vault/api) reads them. The token is checked once (lookup-self), so an
// expired or revoked token is reported as denied at start rather than as a confusing read
// error; optionally a token whose policies lack the user's own policy is refused as foreign.
// While the supervisor runs, a renewable token (a periodic one dies after its period otherwise)
// is renewed with renew-self; an AppRole token at the end of its life is replaced by a new login.
//
// # Outcomes
//
// They are distinct because the old sync script turned a transient Vault error into "no token"
// and deleted the user's file:
//
//   - Found: a valid token. It is injected as CLAUDE_CODE_OAUTH_TOKEN and written to the env
//     file if it changed.
//   - NoSecret, NoField (absent or empty), Deleted, Destroyed (the latest version): Vault's
//     confirmed answer that the user has no current token. This is the opt-out: t3 starts on the
//     normal credential flow, and the env file, now stale, is removed. Only Vault's own answers
//     count (judgeRead): 404 {"errors":[]} and nothing else, KV v2 metadata saying the latest
//     version is deleted or destroyed, a 200 with data.metadata lacking the field. A 404 "no
//     handler for route" (a moved, disabled or mistyped mount), 200 {}, a 200 without metadata,
//     404 {} and the like are ErrUnavailable.
//   - ErrDenied, ErrUnavailable, ErrMalformed: Vault gave no usable answer. The supervisor falls
//     back to the token in the env file, with a warning, and never deletes it. Without one it
//     fails, and the exit code says which class.
//   - ErrConfig: the operator's settings cannot work (path template, user name, no auth method,
//     an unreadable token file, a KV v1 mount, bad VAULT_* settings). Surfaced, never covered
//     by a fallback.
//
// Every Vault answer is read through guard: at most 1 MiB of body, and no redirect to another
// host is followed (the Vault client would send the token there).
//
// No error, log line or event carries a token: Secret formats as a redaction with a fingerprint.
package creds

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defaults of the production layout (issue 2).
const (
	DefaultPathTemplate = "secret/workstation/claude-users/{user}"
	DefaultField        = "setup_token"
	DefaultTimeout      = 10 * time.Second
)

// Error classes. Every error New, Resolve and the env file functions return wraps one of these
// or an fs error, and names the Vault path, the file or the setting involved. Callers branch on
// them with errors.Is, to pick an exit code and to decide whether to fall back (Decide).
var (
	// ErrConfig: the settings cannot work (template, user, auth, token file, KV v1, VAULT_*).
	ErrConfig = errors.New("vault configuration")
	// ErrDenied: Vault refused: 403, a refused login, a token lacking the user's policy.
	ErrDenied = errors.New("vault denied access")
	// ErrUnavailable: no usable answer: unreachable, TLS, sealed, 5xx, timeout, garbage.
	ErrUnavailable = errors.New("vault unavailable")
	// ErrMalformed: the field holds something that is not a setup token.
	ErrMalformed = errors.New("malformed setup token")
)

// Config says where the user's token lives and how to reach Vault.
type Config struct {
	// User is the Unix user whose token is resolved; it fills {user}.
	User string
	// PathTemplate is MOUNT/PATH of the KV v2 secret with {user} in it ("" = DefaultPathTemplate).
	PathTemplate string
	// Field is the secret's field holding the token ("" = DefaultField).
	Field string
	// TokenFile holds a Vault token ("" = none). The caller computes the default location.
	TokenFile string
	// TokenFileExplicit says the operator named TokenFile: then a missing file is an error;
	// otherwise, a default location, it is skipped.
	TokenFileExplicit bool
	// AppRoleRoleID and AppRoleSecretIDFile log in with AppRole when neither a token file nor
	// VAULT_TOKEN is available.
	AppRoleRoleID       string
	AppRoleSecretIDFile string
	// Timeout bounds New (login and token check) and each Resolve (default DefaultTimeout). A
	// smaller VAULT_CLIENT_TIMEOUT still bounds each request.
	Timeout time.Duration
	// Getenv supplies VAULT_TOKEN and every VAULT_* variable the Vault client reads; nil means
	// os.Getenv. Tests inject a whole environment; cmd/ passes the supervisor's own.
	Getenv func(string) string
	// PolicyTemplate, when set (e.g. "workstation-claude-{user}"), refuses a token whose
	// policies (token and identity) lack that policy: a token issued for somebody else.
	PolicyTemplate string
}

func (c Config) withDefaults() Config {
	if c.PathTemplate == "" {
		c.PathTemplate = DefaultPathTemplate
	}
	if c.Field == "" {
		c.Field = DefaultField
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// SecretPath is the user's secret path, MOUNT/PATH: the template with {user} replaced. It
// refuses a template without {user} (a shared token is forbidden), a template with empty or
// dot segments, and a user name that could change the meaning of the path.
func (c Config) SecretPath() (string, error) {
	tmpl := c.withDefaults().PathTemplate
	if !strings.Contains(tmpl, "{user}") {
		return "", fmt.Errorf("%w: Vault path template %q has no {user}: one token shared by several users is forbidden", ErrConfig, tmpl)
	}
	if err := validateUser(c.User); err != nil {
		return "", err
	}
	p := strings.Trim(strings.ReplaceAll(tmpl, "{user}", c.User), "/")
	segs := strings.Split(p, "/")
	if len(segs) < 2 {
		return "", fmt.Errorf("%w: Vault path template %q: want MOUNT/PATH", ErrConfig, tmpl)
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "{}") {
			return "", fmt.Errorf("%w: Vault path template %q: empty, dot or unknown {…} segment", ErrConfig, tmpl)
		}
		// Vault paths are words; '?', '#', '%', spaces and the like would change the request
		// (a query, a fragment, an escape) rather than name a secret.
		for i := 0; i < len(s); i++ {
			if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '@' || c == '+') {
				return "", fmt.Errorf("%w: Vault path template %q: character %q is not allowed in a path", ErrConfig, tmpl, c)
			}
		}
	}
	return p, nil
}

// policy is the user's own policy name, or "" when no check is configured.
func (c Config) policy() (string, error) {
	if c.PolicyTemplate == "" {
		return "", nil
	}
	if !strings.Contains(c.PolicyTemplate, "{user}") {
		// A fixed name cannot tell this user's token from another's: the check would prove nothing.
		return "", fmt.Errorf("%w: Vault policy template %q has no {user}", ErrConfig, c.PolicyTemplate)
	}
	return strings.ReplaceAll(c.PolicyTemplate, "{user}", c.User), nil
}

// validateUser accepts the user names Debian's adduser accepts by default, restricted to
// [a-z0-9_.-], not starting with '-', not "." or "..", at most 32 bytes: nothing that could
// climb out of the Vault path, start an option, or name a different policy.
func validateUser(u string) error {
	bad := u == "" || len(u) > 32 || u[0] == '-' || strings.Trim(u, ".") == ""
	for i := 0; i < len(u) && !bad; i++ {
		c := u[i]
		bad = !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.')
	}
	if bad {
		return fmt.Errorf("%w: user name %q: want 1-32 of [a-z0-9_.-], not starting with '-', not only dots", ErrConfig, u)
	}
	return nil
}

// AuthSource says how the supervisor authenticated to Vault (the event field T3_VAULT_AUTH).
type AuthSource string

// Auth sources, in the order they are tried.
const (
	AuthTokenFile AuthSource = "token-file"
	AuthEnv       AuthSource = "VAULT_TOKEN"
	AuthAppRole   AuthSource = "approle"
)

// Outcome is Vault's answer about the user's token. The zero value, Unknown, is no answer.
type Outcome int

// Outcomes. All but Found are opt-outs (Outcome.OptOut).
const (
	Unknown   Outcome = iota
	Found             // a valid token
	NoSecret          // no secret at the user's path
	NoField           // the secret has no such field, or it is empty
	Deleted           // the latest version was deleted (soft delete: `vault kv delete`)
	Destroyed         // the latest version was destroyed (`vault kv destroy`)
)

// String is the outcome's name in events and the dry-run.
func (o Outcome) String() string {
	switch o {
	case Found:
		return "found"
	case NoSecret:
		return "no-secret"
	case NoField:
		return "no-field"
	case Deleted:
		return "deleted"
	case Destroyed:
		return "destroyed"
	}
	return "unknown"
}

// OptOut reports whether the outcome is Vault's confirmed answer that the user has no current
// token: the only answers that may remove the env file.
func (o Outcome) OptOut() bool {
	return o == NoSecret || o == NoField || o == Deleted || o == Destroyed
}

// Result is one resolution. On an error, the fields known by then are still set (Auth, Path,
// and after the mount lookup Mount and KVVersion), for the dry-run and the failure event.
type Result struct {
	Outcome   Outcome
	Token     Secret     // set only for Found
	Auth      AuthSource // how the client authenticated
	Path      string     // MOUNT/PATH of the secret
	Mount     string     // the KV mount, e.g. "secret"
	KVVersion int        // the mount's KV version (always 2 on success)
	// MountGuessed: Vault refused the mount lookup, Mount is the path's first segment.
	MountGuessed bool
	Version      int // the secret's current version number (0 for NoSecret)
	// Created is when the current version was written (KV v2 metadata created_time; zero when
	// unknown). ExpiresAt is the secret's custom_metadata.expires_at as Vault gave it, unparsed
	// ("" when not set). TokenExpiry turns them into the token's expiry.
	Created   time.Time
	ExpiresAt string
	Renewable bool          // whether the Vault token can be renewed (KeepAlive does it)
	TTL       time.Duration // the Vault token's remaining TTL at the last check; 0 = never expires
}
