package creds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	vault "github.com/hashicorp/vault/api"
)

// maxVaultAnswer bounds the body of every Vault response the client reads. The answers the
// supervisor asks for (lookup-self, a mount, one KV secret, a renewal, a login) are a few KiB; a
// bigger body is not Vault's answer to them. Without a bound, api.ParseSecret decodes whatever
// arrives: a 100 MB body took the supervisor to 640 MB RSS (RELIABILITY.md).
const maxVaultAnswer = 1 << 20

// errAnswerTooLarge is the read error of a body past maxVaultAnswer.
var errAnswerTooLarge = fmt.Errorf("the answer is larger than %d bytes: not read further", maxVaultAnswer)

// guard is the Vault client's http.RoundTripper around the client's own transport. It bounds
// every response body, and refuses a redirect to another origin.
//
// Why the redirect: api.Client follows one 301/302/307 itself (rawRequestWithContext), sending
// the same request, X-Vault-Token header included, to whatever Location names; it only refuses
// an https-to-http downgrade. A proxy or a server answering in Vault's place could collect the
// token that way. Vault's own redirects keep the origin when VAULT_ADDR is the address Vault
// advertises (a load balancer in front of an HA cluster: the standby's 307 names api_addr).
// A standby whose api_addr is another node's host sends there: then point VAULT_ADDR at the
// active node or the load balancer (Vault standbys forward requests to the active node by
// default, so this is rare). The refusal is an error the Vault client does not retry (checkRetry).
type guard struct{ next http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (g guard) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := g.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		if loc, lerr := req.URL.Parse(resp.Header.Get("Location")); lerr == nil && !sameOrigin(req.URL, loc) {
			resp.Body.Close()
			return nil, &redirectError{from: req.URL.Host, to: loc.Scheme + "://" + loc.Host}
		}
	}
	resp.Body = &boundedBody{rc: resp.Body, left: maxVaultAnswer}
	return resp, nil
}

// sameOrigin compares scheme, host and port (RFC 6454), the ports defaulted from the scheme.
func sameOrigin(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if u.Scheme == "https" {
			return "443"
		}
		return "80"
	}
	return a.Scheme == b.Scheme && a.Hostname() == b.Hostname() && port(a) == port(b)
}

// redirectError is a redirect that guard refused to let the client follow.
type redirectError struct{ from, to string }

func (e *redirectError) Error() string {
	return fmt.Sprintf("Vault at %s redirected to %s: a redirect to another host is not followed (the request carries the Vault token); set VAULT_ADDR to the active node", e.from, e.to)
}

// checkRetry is api.DefaultRetryPolicy, except that a refused redirect is final: retrying it
// would only ask the same server for the same redirect.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	var re *redirectError
	if errors.As(err, &re) {
		return false, err
	}
	return vault.DefaultRetryPolicy(ctx, resp, err)
}

// boundedBody reads at most left bytes of rc; a body longer than that is an error, not a
// truncation (a truncated JSON answer could still parse).
type boundedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Exactly the bound is fine: look for one byte more.
		var one [1]byte
		if n, err := b.rc.Read(one[:]); n > 0 {
			return 0, errAnswerTooLarge
		} else {
			return 0, err
		}
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }
