// Package creds resolves a user's own long-lived Claude setup token from HashiCorp Vault, and
// keeps the copy other sessions of that user read (the env file).
//
// Resolution, in order:
//
//  1. Authenticate to Vault, first that is available: the token file (systemd LoadCredential=
//     puts it at $CREDENTIALS_DIRECTORY/vault-token; else ~/.config/claude-auth-sync/vault-token),
//     then VAULT_TOKEN, then AppRole (role id and a secret id file). VAULT_ADDR, VAULT_CACERT,
//     VAULT_NAMESPACE and the other VAULT_* variables work as in the Vault CLI.
//  2. Read the user's own path, a KV v2 secret (default secret/workstation/claude-users/USER),
//     field setup_token. The path template must contain {user}: one token shared by many users
//     is forbidden.
//
// Outcomes are distinct, because the old sync script turned a transient Vault error into "no
// token" and deleted the user's file:
//
//   - Found: a valid token. Inject it; write the env file if it changed.
//   - NoSecret, NoField, Deleted, Destroyed: Vault answered that the user has no current token.
//     This is the opt-out: t3 starts on the normal credential flow, the env file is removed.
//   - ErrDenied, ErrUnavailable, ErrMalformed: Vault did not give an answer we can use. Fall back
//     to the token in the env file, with a warning, and never delete it. Without one, fail with
//     an exit code that says which.
//   - ErrConfig: the operator's settings cannot work (template, auth, KV v1). Surfaced, not
//     papered over by a fallback.
package creds

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defaults of the production layout.
const (
	DefaultPathTemplate = "secret/workstation/claude-users/{user}"
	DefaultField        = "setup_token"
	DefaultTimeout      = 10 * time.Second
)

// Error classes; the concrete errors wrap one of these and name the Vault path, file or flag.
var (
	ErrConfig      = errors.New("vault configuration")
	ErrDenied      = errors.New("vault denied access")
	ErrUnavailable = errors.New("vault unavailable")
	ErrMalformed   = errors.New("malformed setup token")
)

// Config says where the user's token lives and how to reach Vault.
type Config struct {
	User         string
	PathTemplate string // "" = DefaultPathTemplate
	Field        string // "" = DefaultField
	// TokenFile holds a Vault token. TokenFileExplicit says the operator named it: then a
	// missing file is an error, otherwise (a default location) it is skipped.
	TokenFile         string
	TokenFileExplicit bool
	// AppRoleRoleID and AppRoleSecretIDFile log in with AppRole when no token is available.
	AppRoleRoleID       string
	AppRoleSecretIDFile string
	// PolicyTemplate, when set (e.g. "workstation-claude-{user}"), refuses a token whose
	// policies lack that policy: a token issued for somebody else.
	PolicyTemplate string
	// Timeout bounds one whole resolution, login and read (default DefaultTimeout).
	Timeout time.Duration
	// Address overrides VAULT_ADDR (tests).
	Address string
	// Getenv supplies VAULT_TOKEN; nil means os.Getenv. The other VAULT_* variables are read
	// by the Vault client from the process environment, as the Vault CLI does.
	Getenv func(string) string
}

// SecretPath is the user's secret path: the template with {user} replaced. It refuses a
// template without {user} and a user name that could climb out of the path.
func (c Config) SecretPath() (string, error) {
	tmpl := c.PathTemplate
	if tmpl == "" {
		tmpl = DefaultPathTemplate
	}
	if !strings.Contains(tmpl, "{user}") {
		return "", fmt.Errorf("%w: path template %q has no {user}: one token shared by several users is forbidden", ErrConfig, tmpl)
	}
	if err := validUser(c.User); err != nil {
		return "", err
	}
	p := strings.Trim(strings.ReplaceAll(tmpl, "{user}", c.User), "/")
	if strings.Contains(p, "//") || !strings.Contains(p, "/") {
		return "", fmt.Errorf("%w: path template %q: want MOUNT/PATH", ErrConfig, tmpl)
	}
	return p, nil
}

// validUser accepts the user names useradd(8) accepts by default, which excludes "/", ".."
// and anything else that would change the meaning of the Vault path or a policy name.
func validUser(u string) error {
	if u == "" || len(u) > 32 || u[0] == '-' || u == "." || u == ".." {
		return fmt.Errorf("%w: user name %q is not valid", ErrConfig, u)
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || (c == '$' && i == len(u)-1)) {
			return fmt.Errorf("%w: user name %q is not valid", ErrConfig, u)
		}
	}
	return nil
}

// AuthSource says how the supervisor authenticated to Vault.
type AuthSource string

// Auth sources, in the order they are tried.
const (
	AuthTokenFile AuthSource = "token-file"
	AuthEnv       AuthSource = "VAULT_TOKEN"
	AuthAppRole   AuthSource = "approle"
)

// Outcome is Vault's answer about the user's token.
type Outcome int

// Outcomes.
const (
	Unknown   Outcome = iota
	Found             // a valid token
	NoSecret          // no secret at the user's path
	NoField           // the secret has no setup_token, or it is empty
	Deleted           // the latest version was deleted (soft delete)
	Destroyed         // the latest version was destroyed
)

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

// OptOut reports whether the outcome is Vault's confirmed answer that the user has no token.
func (o Outcome) OptOut() bool {
	return o == NoSecret || o == NoField || o == Deleted || o == Destroyed
}

// Result is one resolution.
type Result struct {
	Outcome   Outcome
	Token     Secret // only for Found
	Auth      AuthSource
	Path      string // MOUNT/PATH of the secret
	Mount     string
	KVVersion int // the mount's KV version (2)
	Version   int // the secret's version number
	Renewable bool
	TTL       time.Duration // of the Vault token used
}
