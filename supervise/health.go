package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Probe asks the server whether it answers: GET URL must return a complete HTTP response
// within Timeout. Any status counts: a server that answers 503 is alive and can be asked
// again; one that holds the connection open without answering (the 2026-07-02 livelock, port
// open, ~50 min) or refuses it (the 2026-07-08 dropped listener) is not.
type Probe struct {
	URL     string
	Timeout time.Duration
	client  *http.Client
}

// NewProbe returns a Probe of url. Keep-alives are off: every probe must prove that the
// listener still accepts connections, not that one old connection still works.
func NewProbe(url string, timeout time.Duration) *Probe {
	return &Probe{URL: url, Timeout: timeout, client: &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		// A redirect is an answer; do not follow it somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Check performs one probe.
func (p *Probe) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("GET %s: no answer within %v", p.URL, p.Timeout)
		}
		return fmt.Errorf("GET %s: %w", p.URL, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return nil
}

// ProbeURL is the URL that probes a server listening on host and port: that address itself
// (an IPv6 one in brackets), or loopback when host is a wildcard (0.0.0.0, ::) or empty (Node
// then listens on every interface, loopback included). A server bound to 127.0.0.2 or ::1 alone
// never answers on 127.0.0.1.
func ProbeURL(host string, port int) string {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if h == "" {
		h = "127.0.0.1"
	} else if ip, err := netip.ParseAddr(h); err == nil && ip.IsUnspecified() {
		h = "127.0.0.1"
		if ip.Is6() {
			h = "::1"
		}
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(h, strconv.Itoa(port)), Path: "/"}
	return u.String()
}

// Clock is the time source of the health logic; tests use a fake one.
type Clock interface {
	Now() time.Time
}

// Health keeps the verdict on a server from its probe results: whether it answered within
// ReadyTimeout of Started (readiness), and whether it stopped answering for longer than Window
// (liveness). Both deadlines are read from Clock alone, so a test steps them without sleeping.
type Health struct {
	Window time.Duration // how long without a good probe, after being ready, makes it dead; 0 = never
	// ReadyTimeout is how long after Started the server may take to answer for the first
	// time; 0 = no limit.
	ReadyTimeout time.Duration
	Started      time.Time // when the server was started, on Clock
	Clock        Clock

	ready     bool
	lastGood  time.Time
	lastErr   error
	failures  int // consecutive
	firstFail time.Time
}

// Verdict is what the supervisor should do after a probe.
type Verdict int

// Verdicts.
const (
	Waiting    Verdict = iota // not ready yet, keep probing
	Ready                     // became ready with this probe: READY=1
	Alive                     // answered: WATCHDOG=1
	Failing                   // missed, but within the window: no WATCHDOG=1
	Dead                      // missed for longer than the window: stop it
	NeverReady                // not answered within ReadyTimeout of the start: stop it
)

// Record takes one probe result and returns the verdict.
func (h *Health) Record(err error) Verdict {
	now := h.Clock.Now()
	if err == nil {
		h.lastGood, h.failures, h.lastErr = now, 0, nil
		if !h.ready {
			h.ready = true
			return Ready
		}
		return Alive
	}
	h.lastErr = err
	if h.failures == 0 {
		h.firstFail = now
	}
	h.failures++
	if !h.ready {
		if h.ReadyTimeout > 0 && now.Sub(h.Started) > h.ReadyTimeout {
			return NeverReady
		}
		return Waiting
	}
	if h.Window > 0 && now.Sub(h.lastGood) >= h.Window {
		return Dead
	}
	return Failing
}

// LastGood is the time of the last answered probe (zero before the first).
func (h *Health) LastGood() time.Time { return h.lastGood }

// Failures is the number of consecutive failed probes and the last error.
func (h *Health) Failures() (int, error) { return h.failures, h.lastErr }
