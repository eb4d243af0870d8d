//go:build linux

package main

import (
	"strings"
	"testing"
)

func TestRedactURLs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://proxy.example:3128", "http://proxy.example:3128"},
		{"http://user:pass@proxy.example:3128", "http://REDACTED@proxy.example:3128"},
		{"https://tok@vault.example:8200/", "https://REDACTED@vault.example:8200/"},
		{"https://cdn.example/o?X-Amz-Signature=abc&X-Amz-Credential=def&flag", "https://cdn.example/o?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&flag"},
		{`Get "http://vuser:***@127.0.0.1:1/v1/sys": refused`, `Get "http://REDACTED@127.0.0.1:1/v1/sys": refused`},
		{"two: http://a:b@h1/ and socks5://c:d@h2:1080", "two: http://REDACTED@h1/ and socks5://REDACTED@h2:1080"},
		{"http://u:p@[::1]:80/x?k=v#frag", "http://REDACTED@[::1]:80/x?k=REDACTED#frag"},
		{"http://u:p@h%zz/?k=v", "http://REDACTED@h%zz/?REDACTED"}, // unparseable: hidden all the same
		{"/usr/bin:/bin", "/usr/bin:/bin"},
		{"no url at all: user:pass@host", "no url at all: user:pass@host"},
	} {
		if got := redactURLs(tc.in); got != tc.want {
			t.Errorf("redactURLs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// A proxy variable without a scheme is read as http:// by Go and curl alike.
	if got := redactEnvValue("https_proxy", "user:pass@proxy.example:3129"); got != "REDACTED@proxy.example:3129" {
		t.Errorf("scheme-less proxy: %q", got)
	}
	if got := redactEnvValue("NO_PROXY", "user:pass@x"); got != "user:pass@x" {
		t.Errorf("NO_PROXY is a host list, not a URL: %q", got)
	}
}

// The dry run (text, JSON, and its events on stderr) prints no credential a URL carries: proxy
// user:password (with and without a scheme), VAULT_ADDR's userinfo, signed query strings in t3's
// environment and arguments.
func TestDryRunRedactsURLCredentials(t *testing.T) {
	w := newVaultWorld(t)
	secrets := []string{"puser", "ppass", "huser", "hpass", "vuser", "vpass", "sigvalue", "credvalue", "argsecret", "dpass"}
	w.setenv("HTTP_PROXY=http://puser:ppass@proxy.example:3128", "https_proxy=huser:hpass@proxy.example:3129",
		"VAULT_ADDR="+strings.Replace(w.v.Addr, "://", "://vuser:vpass@", 1),
		"T3CODE_ASSETS=https://cdn.example/x?X-Amz-Signature=sigvalue&X-Amz-Credential=credvalue")
	for _, output := range []string{"text", "json"} {
		code, p := w.run("--no-cgroup", "--dry-run", "--output", output, "--",
			"serve", "--port", "3773", "--dev-url", "https://duser:dpass@dev.example/?token=argsecret")
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", output, code, p.stdout, p.stderr)
		}
		for _, s := range secrets {
			if strings.Contains(p.stdout.String(), s) || strings.Contains(p.stderr.String(), s) {
				t.Errorf("--output %s prints %q:\n%s\n%s", output, s, p.stdout, p.stderr)
			}
		}
		for _, want := range []string{"proxy.example:3128", "REDACTED@proxy.example:3129", "X-Amz-Signature=REDACTED", "dev.example"} {
			if !strings.Contains(p.stdout.String(), want) {
				t.Errorf("--output %s lacks %q (redaction hid too much):\n%s", output, want, p.stdout)
			}
		}
	}
	w.assertNothingStarted()

	// A failing Vault: its client's error quotes VAULT_ADDR with the user name, in the plan's
	// failure and in the credential_failed event alike.
	w.setenv("VAULT_ADDR=http://vuser:vpass@127.0.0.1:1", "VAULT_MAX_RETRIES=0")
	code, p := w.run("--no-cgroup", "--dry-run", "--vault-timeout", "2s")
	if code != exitCredUnavailable || !strings.Contains(p.stderr.String(), "REDACTED@127.0.0.1:1") {
		t.Errorf("exit %d, want %d with the address redacted in the event\n%s", code, exitCredUnavailable, p.stderr)
	}
	for _, s := range []string{"vuser", "vpass"} {
		if strings.Contains(p.stdout.String()+p.stderr.String(), s) {
			t.Errorf("a failing dry run prints %q:\n%s\n%s", s, p.stdout, p.stderr)
		}
	}
}
