package supervise

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestHealthVerdicts(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	h := &Health{Window: 60 * time.Second, Clock: clk}
	down := errors.New("connection refused")
	// Slow start: failures before the first answer never kill, they only wait.
	for i := 0; i < 100; i++ {
		if v := h.Record(down); v != Waiting {
			t.Fatalf("probe %d before ready: %v", i, v)
		}
		clk.advance(10 * time.Second)
	}
	if v := h.Record(nil); v != Ready {
		t.Fatalf("first answer: %v", v)
	}
	clk.advance(10 * time.Second)
	if v := h.Record(nil); v != Alive {
		t.Fatalf("second answer: %v", v)
	}
	good := clk.t
	for i := 1; i <= 5; i++ {
		clk.advance(10 * time.Second)
		if v := h.Record(down); v != Failing {
			t.Fatalf("%v after the last good probe: %v", clk.t.Sub(good), v)
		}
	}
	clk.advance(10 * time.Second) // 60 s without an answer
	if v := h.Record(down); v != Dead {
		t.Fatalf("%v without an answer: %v", clk.t.Sub(good), v)
	}
	if n, err := h.Failures(); n != 6 || err != down {
		t.Errorf("failures %d %v", n, err)
	}
	if !h.LastGood().Equal(good) {
		t.Errorf("last good %v, want %v", h.LastGood(), good)
	}
	// An answer inside the window resets it.
	h2 := &Health{Window: 30 * time.Second, Clock: clk}
	h2.Record(nil)
	for i := 0; i < 10; i++ {
		clk.advance(20 * time.Second)
		h2.Record(down)
		clk.advance(time.Second)
		if v := h2.Record(nil); v != Alive {
			t.Fatalf("flapping server judged %v", v)
		}
	}
}

// The readiness deadline counts from Started on Clock: failures up to ReadyTimeout wait, the
// first one past it is NeverReady; once ready it no longer applies; 0 waits for ever.
func TestHealthReadyTimeout(t *testing.T) {
	down := errors.New("connection refused")
	type step struct {
		after time.Duration // since the step before
		err   error
		want  Verdict
	}
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		steps   []step
	}{
		{"past the deadline", 30 * time.Second, []step{{30 * time.Second, down, Waiting}, {time.Millisecond, down, NeverReady}}},
		{"ready in time", 30 * time.Second, []step{{29 * time.Second, nil, Ready}, {45 * time.Second, down, Failing}}},
		{"no deadline", 0, []step{{1000 * time.Hour, down, Waiting}}},
	} {
		clk := &fakeClock{t: time.Unix(1000, 0)}
		h := &Health{Window: time.Minute, ReadyTimeout: tc.timeout, Started: clk.t, Clock: clk}
		for i, s := range tc.steps {
			clk.advance(s.after)
			if v := h.Record(s.err); v != s.want {
				t.Errorf("%s: step %d, %v after the start: %v, want %v", tc.name, i+1, clk.t.Sub(h.Started), v, s.want)
			}
		}
	}
}

func TestProbe(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" || r.Method != http.MethodGet {
			t.Errorf("probe sent %s %s", r.Method, r.URL.Path)
		}
		w.WriteHeader(http.StatusServiceUnavailable) // an answer all the same
	}))
	defer ok.Close()
	if err := NewProbe(ok.URL+"/", time.Second).Check(context.Background()); err != nil {
		t.Errorf("answering server: %v", err)
	}

	// Port open, never answers: the livelock.
	hang := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	defer stuck.Close()
	defer close(hang)
	start := time.Now()
	err := NewProbe(stuck.URL+"/", 200*time.Millisecond).Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Errorf("stuck server: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("probe of a stuck server took %v", d)
	}

	// Nobody listening: the dropped listener.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	if err := NewProbe("http://"+addr+"/", time.Second).Check(context.Background()); err == nil {
		t.Error("closed port answered")
	}
}

// The probe dials where the server listens: the address itself, IPv6 in brackets, loopback for
// a wildcard. Each URL is then checked against a real listener on exactly that address, so a
// URL that looks right but does not reach the server fails too.
func TestProbeURL(t *testing.T) {
	for _, tc := range []struct {
		host, want, listen string
	}{
		{"", "http://127.0.0.1:%d/", "127.0.0.1"},
		{"0.0.0.0", "http://127.0.0.1:%d/", "0.0.0.0"},
		{"127.0.0.2", "http://127.0.0.2:%d/", "127.0.0.2"},
		{"::1", "http://[::1]:%d/", "::1"},
		{"[::1]", "http://[::1]:%d/", "::1"},
		{"::", "http://[::1]:%d/", "::"},
		{"0:0:0:0:0:0:0:0", "http://[::1]:%d/", "::"},
		{"localhost", "http://localhost:%d/", "127.0.0.1"},
	} {
		l, err := net.Listen("tcp", net.JoinHostPort(tc.listen, "0"))
		if err != nil {
			t.Fatalf("listen on %s: %v", tc.listen, err)
		}
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		srv.Listener = l
		srv.Start()
		port := l.Addr().(*net.TCPAddr).Port
		got := ProbeURL(tc.host, port)
		if want := fmt.Sprintf(tc.want, port); got != want {
			t.Errorf("ProbeURL(%q) = %s, want %s", tc.host, got, want)
		}
		if err := NewProbe(got, 2*time.Second).Check(context.Background()); err != nil {
			t.Errorf("--host %q, listening on %s: %v", tc.host, tc.listen, err)
		}
		srv.Close()
	}
}
