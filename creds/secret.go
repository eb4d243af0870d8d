package creds

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// TokenPrefix starts every Claude setup token (`claude setup-token`, a long-lived OAuth token
// with scope user:inference).
const TokenPrefix = "sk-ant-oat01-"

// Secret holds a token. Every way Go formats a value — fmt's verbs, slog, encoding/json,
// encoding/text — prints a redaction with a short fingerprint, never the value; Reveal is the
// one way to it, used only to build the child's environment and the env file.
type Secret struct{ v string }

// NewSecret wraps v.
func NewSecret(v string) Secret { return Secret{v} }

// Reveal returns the token itself.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether there is no token.
func (s Secret) IsZero() bool { return s.v == "" }

// Equal compares two secrets without revealing either.
func (s Secret) Equal(o Secret) bool { return s.v == o.v }

// Fingerprint identifies the token without disclosing it: "sha256:" and the first 12 hex
// digits of its SHA-256. 48 bits of a hash of a high-entropy token tell an operator which token
// is in use (and whether two places hold the same one) and give an attacker nothing.
func (s Secret) Fingerprint() string {
	if s.v == "" {
		return "none"
	}
	sum := sha256.Sum256([]byte(s.v))
	return "sha256:" + hex.EncodeToString(sum[:6])
}

func (s Secret) redacted() string { return "[redacted " + s.Fingerprint() + "]" }

// String implements fmt.Stringer.
func (s Secret) String() string { return s.redacted() }

// GoString implements fmt.GoStringer (%#v).
func (s Secret) GoString() string { return s.redacted() }

// Format implements fmt.Formatter, so that no verb (%x, %q, %v, %d ...) reaches the value.
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(s.redacted())) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.redacted()) }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.redacted() + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.redacted()), nil }

// ValidateToken checks that v looks like a setup token: the prefix, then only the base64url
// alphabet, within sane length bounds. A value with a newline, '=', quotes, spaces or shell
// metacharacters would break the env file (systemd's EnvironmentFile= and start-claude.sh both
// read it) or smuggle a second variable into it. The error never contains the value.
func ValidateToken(v string) error {
	if !strings.HasPrefix(v, TokenPrefix) {
		return errors.New("does not start with " + TokenPrefix)
	}
	body := v[len(TokenPrefix):]
	if len(body) < 20 || len(v) > 512 {
		return fmt.Errorf("implausible length %d", len(v))
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("character %d is not in [A-Za-z0-9_-]", len(TokenPrefix)+i+1)
		}
	}
	return nil
}
