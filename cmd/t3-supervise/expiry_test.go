//go:build linux

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"t3-supervise/cgroup"
	"t3-supervise/creds"
)

// fakeClock is the expiry policy's clock in the unit tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func testExpiryWatch(t *testing.T, exp creds.Expiry) (*expiryWatch, *fakeClock, *events, *recorder, string) {
	t.Helper()
	clock := &fakeClock{t: time.Date(2027, 11, 1, 12, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	cfg := &config{User: "alice", RuntimeDir: dir, now: clock.now, TokenLifetime: creds.DefaultTokenLifetime}
	p := &plan{decision: creds.Decision{Inject: creds.NewSecret(fakeToken1), From: creds.FromVault},
		Credential: credentialPlan{Version: 4, Path: "secret/workstation/claude-users/alice"}, expiry: exp}
	w := newExpiryWatch(cfg, p)
	t.Cleanup(func() { w.timer.Stop() })
	ev, rec := recordEvents("alice")
	return w, clock, ev, rec, dir
}

const testVaultPath = "secret/workstation/claude-users/alice"

// At start inside 7 days: one credential_expiring for the 7-day threshold (never the 30-day one
// after it), nothing more on later looks until the 1-day threshold, then the expiry; STATUS=
// counts the days; status's file has the expiry and its source; the token is never printed.
func TestExpiryWatchReportsEachThresholdOnce(t *testing.T) {
	at := time.Date(2027, 11, 6, 0, 0, 0, 0, time.UTC)
	w, clock, ev, rec, dir := testExpiryWatch(t, creds.Expiry{At: at, Source: creds.ExpiryCustomMetadata})
	w.save()
	w.check(ev)
	fp := creds.NewSecret(fakeToken1).Fingerprint()
	notice := func(left time.Duration, days int) ExpiryInfo {
		return ExpiryInfo{VaultPath: testVaultPath, ExpiresAt: at, Source: "custom_metadata", DaysLeft: days,
			Fingerprint: fp, KVVersion: 4, Left: left}
	}
	want := []event{CredExpiringEvent{notice(at.Sub(clock.t), 4), 7}}
	if got := rec.all(); !reflect.DeepEqual(got, want) {
		t.Errorf("at the start:\n got  %+v\n want %+v", got, want)
	}
	if n := w.note(); n != "token expires in 4 days (2027-11-06)" {
		t.Errorf("STATUS note %q", n)
	}
	clock.t = clock.t.Add(24 * time.Hour)
	w.check(ev)
	w.follow(ev, refreshResult{res: creds.Result{Outcome: creds.Found, Token: creds.NewSecret(fakeToken1), Version: 4,
		ExpiresAt: "2027-11-06", Created: at.Add(-300 * 24 * time.Hour)}}, creds.NewSecret(fakeToken1), creds.DefaultTokenLifetime)
	if got := rec.all(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after a later look and a re-read of the same expiry:\n got  %+v\n want %+v", got, want)
	}
	clock.t = at.Add(-23 * time.Hour)
	w.check(ev)
	want = append(want, CredExpiringEvent{notice(23*time.Hour, 0), 1})
	if got := rec.all(); !reflect.DeepEqual(got, want) {
		t.Fatalf("the 1-day notice:\n got  %+v\n want %+v", got, want)
	}
	if n := w.note(); n != "token expires in 23 hours (2027-11-06)" {
		t.Errorf("STATUS note %q", n)
	}
	clock.t = at.Add(time.Second)
	w.check(ev)
	w.check(ev)
	want = append(want, CredExpiredEvent{notice(-time.Second, -1)})
	if got := rec.all(); !reflect.DeepEqual(got, want) {
		t.Fatalf("one credential_expired:\n got  %+v\n want %+v", got, want)
	}
	clock.t = at.Add(50 * time.Hour)
	if n := w.note(); n != "token EXPIRED 2 days ago" {
		t.Errorf("STATUS note %q", n)
	}
	st := readCredentialState(dir, os.Getuid())
	if st.TokenExpiresAt == nil || !st.TokenExpiresAt.Equal(at) || st.TokenExpirySource != "custom_metadata" || st.TokenSource != "vault" || st.KVVersion != 4 {
		t.Errorf("credential.json: %+v", st)
	}
	if strings.Contains(rec.text.String(), fakeToken1) {
		t.Error("the token was printed")
	}
}

// A rotation (another token) or a changed expiry starts the notices afresh; a failed re-read
// and an unconfirmed "gone" change nothing; a confirmed opt-out ends the expiry.
func TestExpiryWatchFollowsReReads(t *testing.T) {
	at := time.Date(2027, 11, 20, 0, 0, 0, 0, time.UTC) // 18.5 days after the clock's start
	w, clock, ev, rec, dir := testExpiryWatch(t, creds.Expiry{At: at, Source: creds.ExpiryCustomMetadata})
	expiring := func() []time.Time {
		var ats []time.Time
		for _, e := range eventsOf[CredExpiringEvent](rec) {
			ats = append(ats, e.ExpiresAt)
		}
		return ats
	}
	w.check(ev)
	if got := eventsOf[CredExpiringEvent](rec); len(got) != 1 || got[0].ThresholdDays != 30 {
		t.Fatalf("no 30-day notice: %+v", rec.all())
	}
	// The operator corrects expires_at: a new expiry, reported afresh.
	w.follow(ev, refreshResult{res: creds.Result{Outcome: creds.Found, Token: creds.NewSecret(fakeToken1), Version: 4,
		ExpiresAt: "2027-11-25", Created: at.Add(-300 * 24 * time.Hour)}}, creds.NewSecret(fakeToken1), creds.DefaultTokenLifetime)
	corrected := time.Date(2027, 11, 25, 0, 0, 0, 0, time.UTC)
	if got := expiring(); !slices.Equal(got, []time.Time{at, corrected}) {
		t.Fatalf("the corrected expiry was not reported: %v", got)
	}
	// A failed re-read, and a "gone" that waits for its confirmation: nothing changes.
	w.follow(ev, refreshResult{err: os.ErrDeadlineExceeded}, creds.NewSecret(fakeToken1), creds.DefaultTokenLifetime)
	w.follow(ev, refreshResult{res: creds.Result{Outcome: creds.NoSecret}}, creds.NewSecret(fakeToken1), creds.DefaultTokenLifetime)
	if !w.exp.Known() || len(rec.all()) != 2 {
		t.Fatalf("a failed or unconfirmed read changed the expiry: %+v\n%+v", w.exp, rec.all())
	}
	// A new token whose expires_at was not updated and lies before it: credential_expiry_invalid,
	// created_time + lifetime instead (a year: far, nothing to report).
	created := clock.t.Add(-time.Hour)
	w.follow(ev, refreshResult{res: creds.Result{Outcome: creds.Found, Token: creds.NewSecret(fakeToken2), Version: 5, Path: "secret/workstation/claude-users/alice",
		ExpiresAt: "2027-10-01", Created: created}}, creds.NewSecret(fakeToken2), creds.DefaultTokenLifetime)
	invalid := eventsOf[CredExpiryInvalidEvent](rec)
	if len(invalid) != 1 || invalid[0].VaultPath != testVaultPath || invalid[0].KVVersion != 5 || invalid[0].Err == nil {
		t.Fatalf("want one credential_expiry_invalid naming the path and version 5: %+v", invalid)
	}
	if w.exp.Source != creds.ExpiryCreatedTime || !w.exp.At.Equal(created.Add(creds.DefaultTokenLifetime)) || len(expiring()) != 2 || w.note() != "" {
		t.Fatalf("after the rotation: %+v, note %q\n%+v", w.exp, w.note(), rec.all())
	}
	// The same problem on the next re-read: not reported again.
	w.follow(ev, refreshResult{res: creds.Result{Outcome: creds.Found, Token: creds.NewSecret(fakeToken2), Version: 5, Path: "secret/workstation/claude-users/alice",
		ExpiresAt: "2027-10-01", Created: created}}, creds.NewSecret(fakeToken2), creds.DefaultTokenLifetime)
	if c := len(eventsOf[CredExpiryInvalidEvent](rec)); c != 1 {
		t.Fatalf("the same problem reported %d times", c)
	}
	if st := readCredentialState(dir, os.Getuid()); st.KVVersion != 5 || st.TokenExpirySource != "created_time" {
		t.Errorf("credential.json after the rotation: %+v", st)
	}
	// A confirmed opt-out: no token, no expiry.
	w.follow(ev, refreshResult{res: creds.Result{Outcome: creds.NoSecret}}, creds.Secret{}, creds.DefaultTokenLifetime)
	if w.exp.Known() || w.note() != "" {
		t.Errorf("an expiry after the opt-out: %+v", w.exp)
	}
	if st := readCredentialState(dir, os.Getuid()); st.TokenExpiresAt != nil || st.TokenExpirySource != "" || st.TokenSource != "none" {
		t.Errorf("credential.json after the opt-out: %+v", st)
	}
}

// The timer is armed for the next threshold, but never further than maxExpiryWait (a suspended
// machine's monotonic clock stands still), and not at all once everything is reported.
func TestExpiryWatchArmsItsTimer(t *testing.T) {
	start := time.Date(2027, 11, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		at   time.Time
		want time.Duration
	}{
		{"the 1-day threshold in 30 minutes", start.Add(24*time.Hour + 30*time.Minute), 30 * time.Minute},
		{"the expiry in 10 minutes", start.Add(10 * time.Minute), 10 * time.Minute},
		{"far away: at most an hour", start.Add(300 * 24 * time.Hour), maxExpiryWait},
		{"expired and reported: not armed", start.Add(-48 * time.Hour), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, _, ev, _, _ := testExpiryWatch(t, creds.Expiry{At: tc.at, Source: creds.ExpiryCreatedTime})
			w.check(ev)
			if w.wait != tc.want {
				t.Errorf("armed for %v, want %v", w.wait, tc.want)
			}
			if armed := w.timer.Stop(); armed != (tc.want >= 0) {
				t.Errorf("timer armed %v", armed)
			}
		})
	}
	// Unknown expiry: nothing to arm.
	w, _, ev, _, _ := testExpiryWatch(t, creds.Expiry{})
	w.check(ev)
	if w.wait != -1 || w.timer.Stop() {
		t.Error("armed without an expiry")
	}
}

// status reads credential.json as root reads a user's directory: never through a symlink, never
// blocked by a FIFO, only a regular file; anything else is an unknown state, not an error.
func TestReadCredentialStateRefusesWhatIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "root-only")
	at := time.Date(2027, 11, 30, 0, 0, 0, 0, time.UTC)
	b, _ := json.Marshal(credentialState{TokenSource: "vault", KVVersion: 2, TokenExpiresAt: &at, TokenExpirySource: "created_time"})
	os.WriteFile(secret, b, 0o600)
	for name, mk := range map[string]func(string) error{
		"symlink": func(p string) error { return os.Symlink(secret, p) },
		"fifo":    func(p string) error { return syscall.Mkfifo(p, 0o600) },
		"dir":     func(p string) error { return os.Mkdir(p, 0o700) },
		"garbage": func(p string) error { return os.WriteFile(p, []byte("{not json"), 0o600) },
		"huge": func(p string) error {
			return os.WriteFile(p, []byte(`{"token_source":"`+strings.Repeat("x", maxRuntimeFile)+`"}`), 0o600)
		},
	} {
		t.Run(name, func(t *testing.T) {
			d := filepath.Join(dir, name)
			os.Mkdir(d, 0o755)
			if err := mk(filepath.Join(d, credentialFile)); err != nil {
				t.Fatal(err)
			}
			done := make(chan credentialState, 1)
			go func() { done <- readCredentialState(d, os.Getuid()) }()
			select {
			case st := <-done:
				if st != (credentialState{}) {
					t.Errorf("read %+v", st)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("blocked")
			}
		})
	}
	d := filepath.Join(dir, "good")
	os.Mkdir(d, 0o755)
	os.WriteFile(filepath.Join(d, credentialFile), b, 0o644)
	if st := readCredentialState(d, os.Getuid()); st.TokenExpiresAt == nil || !st.TokenExpiresAt.Equal(at) || st.KVVersion != 2 {
		t.Errorf("a regular file: %+v", st)
	}
}

// status --json carries the token's expiry at its top level under stable names, which the
// metrics (status --format prom) and fleet tooling read: token_expires_at in RFC 3339 (null when
// unknown) and token_expiry_source.
func TestStatusJSONNamesTheExpiry(t *testing.T) {
	at := time.Date(2027, 11, 30, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		st   credentialState
		want map[string]any
	}{
		{credentialState{TokenSource: "vault", KVVersion: 3, TokenExpiresAt: &at, TokenExpirySource: "custom_metadata"},
			map[string]any{"token_source": "vault", "kv_version": 3.0, "token_expires_at": "2027-11-30T00:00:00Z", "token_expiry_source": "custom_metadata"}},
		{credentialState{},
			map[string]any{"token_source": "", "kv_version": 0.0, "token_expires_at": nil, "token_expiry_source": ""}},
	} {
		b, err := json.Marshal(statusReport{Status: &cgroup.Status{Schema: 1}, User: "alice", LastKills: []cgroup.KillRecord{}, credentialState: tc.st})
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		json.Unmarshal(b, &got)
		for k, v := range tc.want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s: %v (present %v), want %v in %s", k, g, ok, v, b)
			}
		}
		if got["schema"] != 1.0 || got["user"] != "alice" {
			t.Errorf("the rest of the report is gone: %s", b)
		}
	}
}
