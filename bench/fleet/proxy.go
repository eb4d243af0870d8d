//go:build linux

package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
)

// kind is what a request to Vault asks for, as the supervisor uses the API.
type kind int

const (
	lookupSelf kind = iota // auth/token/lookup-self: the login check at start, and KeepAlive's check after a failed renewal
	mounts                 // sys/internal/ui/mounts/PATH: the mount lookup before every read
	kvRead                 // secret/data/PATH: the read of the user's secret
	renewSelf              // auth/token/renew-self: KeepAlive
	other
	nKinds
)

var kindNames = [nKinds]string{"lookup-self", "ui/mounts", "KV read", "renew-self", "other"}

// request is one request the proxy passed on (or failed), stamped with its arrival.
type request struct {
	at     time.Duration // since the proxy's epoch
	kind   kind
	user   int // index of the member it belongs to; -1 when unknown
	status int // as answered to the supervisor; 502 when Vault could not be reached
}

// countingProxy stands between every supervisor and Vault and records each request: the
// supervisors' VAULT_ADDR is the proxy. While Vault is down it answers 502 in Vault's JSON
// shape, where a supervisor talking to Vault directly would see a refused connection; the
// Vault client retries both alike (go-retryablehttp's DefaultRetryPolicy: connection errors and
// every 5xx but 501), and both are ErrUnavailable to the supervisor. A fleet usually has a load
// balancer in front of Vault, which answers the same way.
type countingProxy struct {
	URL   string
	epoch time.Time
	srv   *http.Server

	users  map[string]int // user name -> member index, read-only once serving
	tokens map[string]int // Vault token -> member index, likewise; never printed

	mu   sync.Mutex
	reqs []request
}

func newCountingProxy(backend string, users, tokens map[string]int) (*countingProxy, error) {
	u, err := url.Parse(backend)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{URL: "http://" + ln.Addr().String(), epoch: time.Now(), users: users, tokens: tokens}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 1024, // one kept connection per supervisor, as without the proxy
		IdleConnTimeout:     90 * time.Second,
	}
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, `{"errors":["bench proxy: Vault does not answer"]}`)
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Since(p.epoch)
		k, user := p.classify(r)
		sw := &statusWriter{ResponseWriter: w}
		rp.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		p.mu.Lock()
		p.reqs = append(p.reqs, request{at: at, kind: k, user: user, status: sw.code})
		p.mu.Unlock()
	})}
	go p.srv.Serve(ln)
	return p, nil
}

func (p *countingProxy) Close() { p.srv.Close() }

// since is the time since the proxy's epoch, the time axis of every figure.
func (p *countingProxy) since() time.Duration { return time.Since(p.epoch) }

func (p *countingProxy) classify(r *http.Request) (kind, int) {
	byToken := func() int {
		if i, ok := p.tokens[r.Header.Get("X-Vault-Token")]; ok {
			return i
		}
		return -1
	}
	byPath := func() int {
		if i, ok := p.users[path.Base(r.URL.Path)]; ok {
			return i
		}
		return -1
	}
	switch u := r.URL.Path; {
	case u == "/v1/auth/token/lookup-self":
		return lookupSelf, byToken()
	case u == "/v1/auth/token/renew-self":
		return renewSelf, byToken()
	case strings.HasPrefix(u, "/v1/sys/internal/ui/mounts/"):
		return mounts, byPath()
	case strings.HasPrefix(u, "/v1/secret/data/"):
		return kvRead, byPath()
	}
	return other, byToken()
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// between returns the requests that arrived in [from, to).
func (p *countingProxy) between(from, to time.Duration) []request {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []request
	for _, r := range p.reqs {
		if r.at >= from && r.at < to {
			out = append(out, r)
		}
	}
	return out
}

// firstRead returns, for each of n members, the arrival of its first successful KV read at or
// after from; -1 for a member without one.
func (p *countingProxy) firstRead(from time.Duration, n int) []time.Duration {
	first := make([]time.Duration, n)
	for i := range first {
		first[i] = -1
	}
	for _, r := range p.between(from, 1<<62) {
		// Appended as they complete: not in order of arrival.
		if r.kind == kvRead && r.status == http.StatusOK && r.user >= 0 && r.user < n && (first[r.user] < 0 || r.at < first[r.user]) {
			first[r.user] = r.at
		}
	}
	return first
}
