//go:build linux

package main

import (
	"net/url"
	"regexp"
	"strings"
)

// redactedMark stands in for what the dry run must not print.
const redactedMark = "REDACTED"

// urlPattern finds URL-shaped words: a scheme, "://", and everything up to a blank or a quote.
var urlPattern = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)

// proxyName matches the proxy variables whose value may lack a scheme ("user:pw@proxy:3128"):
// Go's net/http and curl both read such a value as http://.
var proxyName = regexp.MustCompile(`(?i)^(https?|ftp|all)_proxy$`)

// redactURLs hides the credentials a URL can carry in every URL-shaped word of s: its userinfo
// (a proxy's user:password, a token as the user name in VAULT_ADDR) and the value of every query
// parameter (signed URLs carry their signature there). Scheme, host, port and path stay, so the
// output still shows where things go.
func redactURLs(s string) string {
	return urlPattern.ReplaceAllStringFunc(s, redactURL)
}

// redactEnvValue is redactURLs for the value of the variable name.
func redactEnvValue(name, value string) string {
	if proxyName.MatchString(name) && value != "" && !strings.Contains(value, "://") {
		return strings.TrimPrefix(redactURL("http://"+value), "http://")
	}
	return redactURLs(value)
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Unparseable: still never print what may be userinfo or a query.
		rest := raw[strings.Index(raw, "://")+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			rest = redactedMark + rest[at:]
		}
		if q := strings.IndexByte(rest, '?'); q >= 0 {
			rest = rest[:q+1] + redactedMark
		}
		return raw[:strings.Index(raw, "://")+3] + rest
	}
	hadUser := u.User != nil
	u.User = nil
	if u.RawQuery != "" {
		params := strings.Split(u.RawQuery, "&")
		for i, kv := range params {
			if k, _, ok := strings.Cut(kv, "="); ok {
				params[i] = k + "=" + redactedMark
			}
		}
		u.RawQuery = strings.Join(params, "&")
	}
	out := u.String()
	if hadUser {
		out = strings.Replace(out, "://", "://"+redactedMark+"@", 1)
	}
	return out
}

// redacted is the plan as the dry run prints it: every URL-shaped value with its credentials
// hidden (redactURLs), in the text and the JSON alike.
func (p *plan) redacted() *plan {
	r := *p
	r.Credential.VaultAddr = redactURLs(p.Credential.VaultAddr)
	r.Credential.Fallback = redactURLs(p.Credential.Fallback)
	r.Argv = make([]string, len(p.Argv))
	for i, a := range p.Argv {
		r.Argv[i] = redactURLs(a)
	}
	r.Env = make([]envVar, len(p.Env))
	for i, e := range p.Env {
		e.Value = redactEnvValue(e.Name, e.Value)
		r.Env[i] = e
	}
	if p.Failure != nil {
		f := *p.Failure
		f.Error = redactURLs(f.Error)
		r.Failure = &f
	}
	return &r
}
