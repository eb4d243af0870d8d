package creds

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeVault answers the three requests a resolution makes (lookup-self, the mount preflight,
// the KV v2 read); read decides the last one, to produce faults a real server cannot produce
// on demand. It counts the reads: a client must never storm a failing server.
type fakeVault struct {
	*httptest.Server
	reads atomic.Int32
}

func newFakeVault(t *testing.T, read http.HandlerFunc) *fakeVault {
	f := &fakeVault{}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/auth/token/lookup-self", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"data":{"ttl":3600,"renewable":true,"policies":["default","workstation-claude-alice"]}}`)
	})
	mux.HandleFunc("/v1/sys/internal/ui/mounts/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"data":{"path":"secret/","type":"kv","options":{"version":"2"}}}`)
	})
	mux.HandleFunc("/v1/secret/data/", func(w http.ResponseWriter, r *http.Request) {
		f.reads.Add(1)
		read(w, r)
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func (f *fakeVault) config(t *testing.T) Config {
	return Config{User: "alice", Address: f.URL, Timeout: 2 * time.Second,
		TokenFile: filepath.Join(t.TempDir(), "none"), Getenv: func(k string) string {
			if k == "VAULT_TOKEN" {
				return "hvs.fake"
			}
			return ""
		}}
}

func resolveWith(t *testing.T, f *fakeVault, cfg Config) (Result, error, time.Duration) {
	t.Helper()
	start := time.Now()
	c, err := New(context.Background(), cfg)
	if err != nil {
		return Result{}, err, time.Since(start)
	}
	res, err := c.Resolve(context.Background())
	return res, err, time.Since(start)
}

func TestFaultsAreUnavailableBoundedAndNoStorm(t *testing.T) {
	t.Setenv("VAULT_MAX_RETRIES", "") // the Vault client's default: 2 retries on 5xx
	for _, tc := range []struct {
		name     string
		read     http.HandlerFunc
		timeout  time.Duration
		maxReads int32
	}{
		{"500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, `{"errors":["internal"]}`, 500) }, 5 * time.Second, 3},
		{"502", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) }, 5 * time.Second, 3},
		{"503 sealed", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(503)
			fmt.Fprint(w, `{"errors":["Vault is sealed"]}`)
		}, 5 * time.Second, 3},
		{"malformed JSON", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"data": {"data": {"setup_token": `) }, 5 * time.Second, 1},
		{"HTML error page", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `<html>proxy error</html>`) }, 5 * time.Second, 1},
		{"stall", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		}, 500 * time.Millisecond, 3},
		{"redirect loop", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, r.URL.String(), http.StatusTemporaryRedirect)
		}, 500 * time.Millisecond, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeVault(t, tc.read)
			cfg := f.config(t)
			cfg.Timeout = tc.timeout
			_, err, took := resolveWith(t, f, cfg)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if !strings.Contains(err.Error(), "secret/workstation/claude-users/alice") {
				t.Errorf("error does not name the path: %v", err)
			}
			if limit := tc.timeout + 2*time.Second; took > limit {
				t.Errorf("took %v, bound %v", took, limit)
			}
			if n := f.reads.Load(); n > tc.maxReads {
				t.Errorf("%d reads of one secret, at most %d", n, tc.maxReads)
			}
			t.Logf("%s: %v after %v and %d reads", tc.name, err, took.Round(time.Millisecond), f.reads.Load())
		})
	}
}

func TestFakeVaultAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		code int
		want Outcome
		err  error
	}{
		{"found", `{"data":{"data":{"setup_token":"` + testToken + `"},"metadata":{"version":3,"deletion_time":"","destroyed":false}}}`, 200, Found, nil},
		{"no field", `{"data":{"data":{"other":"x"},"metadata":{"version":1,"deletion_time":"","destroyed":false}}}`, 200, NoField, nil},
		{"empty field", `{"data":{"data":{"setup_token":""},"metadata":{"version":1,"deletion_time":"","destroyed":false}}}`, 200, NoField, nil},
		{"number", `{"data":{"data":{"setup_token":42},"metadata":{"version":1,"deletion_time":"","destroyed":false}}}`, 200, 0, ErrMalformed},
		{"not a token", `{"data":{"data":{"setup_token":"hunter2"},"metadata":{"version":1,"deletion_time":"","destroyed":false}}}`, 200, 0, ErrMalformed},
		{"deleted", `{"data":{"data":null,"metadata":{"version":4,"deletion_time":"2026-11-01T10:00:00Z","destroyed":false}}}`, 404, Deleted, nil},
		{"destroyed", `{"data":{"data":null,"metadata":{"version":4,"deletion_time":"","destroyed":true}}}`, 404, Destroyed, nil},
		{"no secret", `{"errors":[]}`, 404, NoSecret, nil},
		{"denied", `{"errors":["1 error occurred:\n\t* permission denied\n\n"]}`, 403, 0, ErrDenied},
	} {
		f := newFakeVault(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.code)
			fmt.Fprint(w, tc.body)
		})
		res, err, _ := resolveWith(t, f, f.config(t))
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("%s: the error repeats the value", tc.name)
			}
			continue
		}
		if err != nil || res.Outcome != tc.want {
			t.Errorf("%s: %v %v, want %v", tc.name, res.Outcome, err, tc.want)
		}
		if tc.want == Found && (res.Version != 3 || res.Token.Reveal() != testToken || res.Auth != AuthEnv) {
			t.Errorf("found: %+v", res)
		}
	}
}

func TestForeignTokenRefused(t *testing.T) {
	f := newFakeVault(t, func(w http.ResponseWriter, r *http.Request) {})
	cfg := f.config(t)
	cfg.PolicyTemplate = "workstation-claude-{user}"
	cfg.User = "bob"
	_, err, _ := resolveWith(t, f, cfg)
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "workstation-claude-bob") {
		t.Errorf("err %v", err)
	}
}

func TestNoAuthIsAConfigError(t *testing.T) {
	f := newFakeVault(t, func(w http.ResponseWriter, r *http.Request) {})
	cfg := f.config(t)
	cfg.Getenv = func(string) string { return "" }
	_, err, _ := resolveWith(t, f, cfg)
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), cfg.TokenFile) {
		t.Errorf("err %v", err)
	}
	cfg.TokenFileExplicit = true
	_, err, _ = resolveWith(t, f, cfg)
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "none") {
		t.Errorf("explicit missing token file: %v", err)
	}
}
