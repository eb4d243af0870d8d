package creds

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
)

// TokenPrefix starts every Claude setup token (`claude setup-token`: a long-lived OAuth token
// with scope user:inference). API keys (sk-ant-api03-) and other kinds are refused: they are not
// what CLAUDE_CODE_OAUTH_TOKEN takes.
const TokenPrefix = "sk-ant-oat01-"

// Token length bounds, on the whole value. Setup tokens seen so far are about 108 characters;
// the bounds only catch a truncated paste or a file pasted into the field.
const (
	minTokenLen = len(TokenPrefix) + 20
	maxTokenLen = 512
)

// Secret holds a token. Every way Go formats a value prints a redaction with a short
// fingerprint, never the value: fmt's verbs (%p included, and %v of a struct that holds a
// Secret in an unexported field), slog, encoding/json, encoding/text. Reveal is the one way to
// the value, used only for the child's environment and the env file.
//
// The value sits behind a pointer so that the reflection fmt falls back on (for unexported
// fields, and for bad verbs such as %p, where it bypasses Format) prints an address. Compare
// Secrets with Equal, not ==.
type Secret struct{ p *string }

// NewSecret wraps v; NewSecret("") is the zero Secret.
func NewSecret(v string) Secret {
	if v == "" {
		return Secret{}
	}
	return Secret{&v}
}

// Reveal returns the token itself. Never log, print or wrap it into an error.
func (s Secret) Reveal() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

// IsZero reports whether there is no token.
func (s Secret) IsZero() bool { return s.p == nil }

// Equal reports whether s and o hold the same token, in constant time (the comparison must not
// become an oracle for the value).
func (s Secret) Equal(o Secret) bool {
	return subtle.ConstantTimeCompare([]byte(s.Reveal()), []byte(o.Reveal())) == 1
}

// Fingerprint identifies the token without disclosing it: "sha256:" and the first 12 hex digits
// of its SHA-256 ("none" for the zero Secret). 48 bits of a hash of a high-entropy token tell an
// operator which token is in use and whether two places hold the same one, and give an attacker
// nothing.
func (s Secret) Fingerprint() string {
	if s.p == nil {
		return "none"
	}
	sum := sha256.Sum256([]byte(*s.p))
	return "sha256:" + hex.EncodeToString(sum[:6])
}

func (s Secret) redacted() string {
	if s.p == nil {
		return "[redacted none]"
	}
	return "[redacted " + s.Fingerprint() + "]"
}

// String implements fmt.Stringer with the redaction.
func (s Secret) String() string { return s.redacted() }

// GoString implements fmt.GoStringer (%#v) with the redaction.
func (s Secret) GoString() string { return s.redacted() }

// Format implements fmt.Formatter, so that no verb (%x, %q, %d, widths, flags) reaches the value.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.redacted())) }

// LogValue implements slog.LogValuer with the redaction.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.redacted()) }

// MarshalJSON implements json.Marshaler with the redaction (the dry-run's --output json).
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.redacted() + `"`), nil }

// MarshalText implements encoding.TextMarshaler with the redaction (map keys, XML, flags).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.redacted()), nil }

// ValidateToken checks that v looks like a setup token: TokenPrefix, then only the base64url
// alphabet [A-Za-z0-9_-], 33 to 512 characters in all. A newline, '=', a quote, a space or a
// shell metacharacter would break the env file (systemd's EnvironmentFile= and start-claude.sh
// both read it) or smuggle a second variable into it. The error wraps ErrMalformed and never
// contains the value, not even one character of it.
func ValidateToken(v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%w: empty", ErrMalformed)
	case !strings.HasPrefix(v, TokenPrefix):
		return fmt.Errorf("%w: does not start with %s", ErrMalformed, TokenPrefix)
	case len(v) < minTokenLen || len(v) > maxTokenLen:
		return fmt.Errorf("%w: %d characters, want %d to %d", ErrMalformed, len(v), minTokenLen, maxTokenLen)
	}
	for i := len(TokenPrefix); i < len(v); i++ {
		if !tokenChar(v[i]) {
			return fmt.Errorf("%w: character %d is not in [A-Za-z0-9_-]", ErrMalformed, i+1)
		}
	}
	return nil
}

func tokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
