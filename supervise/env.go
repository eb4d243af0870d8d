package supervise

import (
	"fmt"
	"sort"
	"strings"
)

// DefaultAllow is the environment a `t3 serve` child receives from the supervisor's own
// environment when the operator does not say otherwise. A trailing '*' matches a prefix.
//
// It is what the old t3-serve@.service unit gave t3 (HOME, PATH, NODE_ENV and the T3_* values of
// /etc/t3-serve/USER.env) plus what a Node program and the tools its agents run need to behave
// like in a login session (locale, time zone, proxies, CA bundles, XDG directories).
// JOURNAL_STREAM is kept because the child writes to the same stderr stream.
var DefaultAllow = []string{
	"HOME", "USER", "LOGNAME", "SHELL", "PATH", "LANG", "LANGUAGE", "LC_*", "TZ", "TERM",
	"TMPDIR", "XDG_*", "NODE_ENV", "NODE_OPTIONS", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE",
	"SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
	"no_proxy", "JOURNAL_STREAM", "T3_*", "T3CODE_*",
}

// Denied names never reach the child, whatever the allowlist says: they are the supervisor's
// own credentials and its private channels to systemd. A child that saw NOTIFY_SOCKET could
// declare the unit ready or feed the watchdog while the supervisor thinks otherwise
// (sd_notify(3)); WATCHDOG_PID/WATCHDOG_USEC describe the supervisor, not the child
// (sd_watchdog_enabled(3)); CREDENTIALS_DIRECTORY holds the Vault token (systemd.exec(5),
// "Credentials"); LISTEN_* would make the child think it was socket-activated (sd_listen_fds(3)).
var Denied = []string{
	"VAULT_*", "NOTIFY_SOCKET", "WATCHDOG_*", "CREDENTIALS_DIRECTORY", "LISTEN_*",
}

// ValidatePattern reports whether p is a usable allowlist entry: an environment variable name,
// optionally ending in '*'.
func ValidatePattern(p string) error {
	name := strings.TrimSuffix(p, "*")
	if name == "" && p != "*" {
		return fmt.Errorf("empty environment pattern")
	}
	if strings.Contains(name, "*") {
		return fmt.Errorf("environment pattern %q: '*' is only allowed at the end", p)
	}
	for i, r := range name {
		ok := r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("environment pattern %q: not a variable name", p)
		}
	}
	return nil
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if p == name {
			return true
		}
	}
	return false
}

// BuildEnv returns the child's environment: the entries of parent (KEY=VALUE, as os.Environ
// gives them) whose name matches allow and is not Denied, then set on top (set wins, and may
// name variables the allowlist would drop, such as CLAUDE_CODE_OAUTH_TOKEN). Entries are sorted
// by name so the dry-run and the real run print the same thing. dropped lists the parent's names
// that were left out, for the dry-run.
func BuildEnv(parent []string, allow []string, set map[string]string) (env []string, dropped []string) {
	vals := make(map[string]string)
	for _, kv := range parent {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			continue
		}
		if _, isSet := set[name]; isSet {
			continue
		}
		if matchAny(Denied, name) || !matchAny(allow, name) {
			dropped = append(dropped, name)
			continue
		}
		vals[name] = val
	}
	for k, v := range set {
		vals[k] = v
	}
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	sort.Strings(names)
	env = make([]string, 0, len(names))
	for _, k := range names {
		env = append(env, k+"="+vals[k])
	}
	sort.Strings(dropped)
	return env, dedup(dropped)
}

func dedup(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// Lookup returns the value of name in env (KEY=VALUE entries), the last one winning as in
// getenv(3) on a duplicated entry.
func Lookup(env []string, name string) (string, bool) {
	val, found := "", false
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			val, found = v, true
		}
	}
	return val, found
}
