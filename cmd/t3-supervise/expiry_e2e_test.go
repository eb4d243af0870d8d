//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// The token's expiry against the real Vault 1.19.0: custom_metadata.expires_at comes with the
// data read (the policy grants read on secret/data/... only), created_time + --token-lifetime
// is the fallback, and the events, STATUS= and the file `status` reads follow it.

// clockEnv is the variable the test build's expiry clock reads (main.expiryClockEnv).
const clockEnv = "T3S_TEST_CLOCK_AHEAD"

var clockBuild struct {
	once sync.Once
	bin  string
	err  error
}

// clockBin is the supervisor built with the test clock: its expiry policy runs clockEnv ahead of
// the wall clock (-ldflags -X main.expiryClockEnv=...), so that a version written a second ago
// can be a year old to it. KV v2 sets created_time itself; it cannot be back-dated.
func clockBin(t *testing.T) string {
	t.Helper()
	clockBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "t3s-clock-")
		if err != nil {
			clockBuild.err = err
			return
		}
		os.Chmod(dir, 0o755)
		clockBuild.bin = filepath.Join(dir, "t3-supervise")
		out, err := exec.Command("go", "build", "-ldflags", "-X main.expiryClockEnv="+clockEnv, "-o", clockBuild.bin, ".").CombinedOutput()
		if err != nil {
			clockBuild.err = fmt.Errorf("building with the test clock: %v\n%s", err, out)
		}
	})
	if clockBuild.err != nil {
		t.Fatal(clockBuild.err)
	}
	return clockBuild.bin
}

func eventLines(out, kind string) []string {
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " "+kind+": ") {
			ls = append(ls, l)
		}
	}
	return ls
}

// expiryWorld is a vault world with a runtime directory and a NOTIFY_SOCKET, and t3 without a
// port, so that READY=1 with STATUS= is sent at once.
type expiryWorld struct {
	*vaultWorld
	runtime string
	notify  *net.UnixConn
	path    string // the secret's path under the mount
}

func newExpiryWorld(t *testing.T) *expiryWorld {
	t.Helper()
	w := &expiryWorld{vaultWorld: newVaultWorld(t)}
	w.path = "workstation/claude-users/" + w.user
	w.runtime = filepath.Join(w.dir, "run")
	if err := os.Mkdir(w.runtime, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(w.dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	os.Chmod(sock, 0o777) // the supervisor may have dropped to nobody
	w.notify = conn
	w.setenv("RUNTIME_DIRECTORY="+w.runtime, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=", "T3_PORT=")
	return w
}

// setExpiresAt records the token's expiry as an operator does: `vault kv metadata put
// -custom-metadata expires_at=V` (put: every custom metadata key replaced), or patch.
func (w *expiryWorld) setExpiresAt(v string, patch bool) {
	w.t.Helper()
	kv := w.v.Client.KVv2("secret")
	md := map[string]any{"expires_at": v}
	var err error
	if patch {
		err = kv.PatchMetadata(context.Background(), w.path, vault.KVMetadataPatchInput{CustomMetadata: md})
	} else {
		err = kv.PutMetadata(context.Background(), w.path, vault.KVMetadataPutInput{CustomMetadata: md})
	}
	if err != nil {
		w.t.Fatalf("vault kv metadata put -custom-metadata expires_at=%s: %v", v, err)
	}
}

// waitStatus waits for a notification whose STATUS= contains want.
func (w *expiryWorld) waitStatus(want string) string {
	w.t.Helper()
	var got []string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		m := readNotify(w.notify, time.Second)
		if strings.Contains(m, "STATUS=") && strings.Contains(m, want) {
			return m
		}
		if m != "" {
			got = append(got, m)
		}
	}
	w.t.Fatalf("no STATUS= with %q; got %q", want, got)
	return ""
}

func (w *expiryWorld) waitEvents(p *proc, kind string, n int) []string {
	w.t.Helper()
	if !waitFor(func() bool { return len(eventLines(p.stderr.String(), kind)) >= n }, 20*time.Second) {
		w.t.Fatalf("%d %s event(s), want %d\n%s", len(eventLines(p.stderr.String(), kind)), kind, n, p.stderr)
	}
	return eventLines(p.stderr.String(), kind)
}

func wantFields(t *testing.T, line string, want ...string) {
	t.Helper()
	for _, f := range want {
		if !strings.Contains(line, f) {
			t.Errorf("%s lacks %s", line, f)
		}
	}
}

// custom_metadata.expires_at, set in the real Vault, read with the data (one read, with a
// policy that grants read on secret/data/... only): the dry run shows it, a start inside 7
// days reports the 7-day threshold once, STATUS= counts the days, a re-read takes a corrected
// expires_at, a malformed one is reported and falls back to created_time, and one that is near
// is reported at 1 day and then as expired by the supervisor's own timer.
func TestExpiryFromCustomMetadata(t *testing.T) {
	parallel(t)
	w := newExpiryWorld(t)
	at := time.Now().Add(5 * 24 * time.Hour).UTC().Truncate(time.Second)
	w.setExpiresAt(at.Format(time.RFC3339), false)

	code, dry := w.run("--no-cgroup", "--dry-run", "--output", "json")
	var pl struct {
		Credential struct {
			ExpiresAt    *time.Time `json:"token_expires_at"`
			ExpirySource string     `json:"token_expiry_source"`
		} `json:"credential"`
	}
	if err := json.Unmarshal(dry.stdout.Bytes(), &pl); err != nil || code != 0 {
		t.Fatalf("dry run exit %d, %v\n%s", code, err, dry.stderr)
	}
	if pl.Credential.ExpiresAt == nil || !pl.Credential.ExpiresAt.Equal(at) || pl.Credential.ExpirySource != "custom_metadata" {
		t.Errorf("dry run: token_expires_at %v from %q, want %v from custom_metadata", pl.Credential.ExpiresAt, pl.Credential.ExpirySource, at)
	}
	code, dryText := w.run("--no-cgroup", "--dry-run")
	if code != 0 || !strings.Contains(dryText.stdout.String(), "expires     "+at.Format(time.RFC3339)+" (from custom_metadata; in 4 days: a real run reports credential_expiring (the 7-day threshold))") {
		t.Errorf("dry run text:\n%s", dryText.stdout)
	}

	p, _ := w.runServe("--refresh-interval", "0")
	line := w.waitEvents(p, "credential_expiring", 1)[0]
	wantFields(t, line, "warning credential_expiring", "T3_EXPIRY_THRESHOLD_DAYS=7", "T3_TOKEN_DAYS_LEFT=4",
		"T3_TOKEN_EXPIRES_AT="+at.Format(time.RFC3339), "T3_TOKEN_EXPIRY_SOURCE=custom_metadata",
		"T3_VAULT_PATH=secret/"+w.path, "T3_KV_VERSION=1")
	w.waitStatus("token expires in 4 days (" + at.Format(time.DateOnly) + ")")
	st := readCredentialState(w.runtime, runtimeOwner(w.t, w.runtime))
	if st.TokenExpiresAt == nil || !st.TokenExpiresAt.Equal(at) || st.TokenExpirySource != "custom_metadata" || st.TokenSource != "vault" || st.KVVersion != 1 {
		t.Errorf("credential.json (what status --json shows): %+v", st)
	}

	// A re-read: the operator corrected the date (patch keeps other custom metadata keys).
	reread := func() {
		time.Sleep(minSpacing) // SIGHUP re-reads are at least minSpacing apart; this one must not be dropped
		p.cmd.Process.Signal(syscall.SIGHUP)
	}
	later := time.Now().Add(20 * 24 * time.Hour).UTC().Truncate(time.Second)
	w.setExpiresAt(later.Format(time.RFC3339), true)
	reread()
	wantFields(t, w.waitEvents(p, "credential_expiring", 2)[1], "T3_EXPIRY_THRESHOLD_DAYS=30", "T3_TOKEN_EXPIRES_AT="+later.Format(time.RFC3339))
	// The same again: nothing new (proved by the next step's events arriving after it).
	reread()
	// A malformed value: reported, naming the path; created_time + a year instead.
	w.setExpiresAt("30.11.2027", true)
	reread()
	bad := w.waitEvents(p, "credential_expiry_invalid", 1)[0]
	wantFields(t, bad, "warning credential_expiry_invalid", "T3_VAULT_PATH=secret/"+w.path, `"30.11.2027"`, "created_time")
	if n := len(eventLines(p.stderr.String(), "credential_expiring")); n != 2 {
		t.Errorf("%d credential_expiring after an unchanged re-read and a malformed date, want 2\n%s", n, p.stderr)
	}
	if !waitFor(func() bool {
		return readCredentialState(w.runtime, runtimeOwner(w.t, w.runtime)).TokenExpirySource == "created_time"
	}, 10*time.Second) {
		t.Errorf("credential.json after the malformed date: %+v", readCredentialState(w.runtime, runtimeOwner(w.t, w.runtime)))
	}
	// An expiry a few seconds away: the 1-day threshold now, then the expiry, from the timer.
	soon := time.Now().Add(6 * time.Second).UTC().Truncate(time.Second)
	w.setExpiresAt(soon.Format(time.RFC3339), true)
	reread()
	wantFields(t, w.waitEvents(p, "credential_expiring", 3)[2], "T3_EXPIRY_THRESHOLD_DAYS=1", "T3_TOKEN_DAYS_LEFT=0")
	wantFields(t, w.waitEvents(p, "credential_expired", 1)[0], "error credential_expired", "T3_TOKEN_EXPIRES_AT="+soon.Format(time.RFC3339),
		"T3_TOKEN_EXPIRY_SOURCE=custom_metadata")
	if time.Now().Before(soon) {
		t.Errorf("credential_expired before the expiry")
	}
	w.waitStatus("token EXPIRED today")
	if code := w.stop(p); code != 0 {
		t.Errorf("exit %d", code)
	}
	if n := len(eventLines(p.stderr.String(), "credential_expired")); n != 1 {
		t.Errorf("%d credential_expired, want 1", n)
	}
}

// Without custom_metadata: the KV version's created_time + --token-lifetime (a year by default),
// with the test build's clock put ahead (a fresh version, a year old to the supervisor). The
// operator's binary reads no clock variable.
func TestExpiryFromCreatedTime(t *testing.T) {
	parallel(t)
	w := newExpiryWorld(t)
	sec, err := w.v.Client.KVv2("secret").Get(context.Background(), w.path)
	if err != nil || sec.VersionMetadata == nil {
		t.Fatalf("vault kv get: %v", err)
	}
	created := sec.VersionMetadata.CreatedTime.UTC()
	year := created.Add(365 * 24 * time.Hour).Truncate(time.Second)

	// The operator's build: the variable means nothing; a fresh token is a year away, no event.
	w.setenv(clockEnv + "=8748h")
	p, _ := w.runServe("--refresh-interval", "0")
	w.waitStatus("token: vault v1")
	if strings.Contains(p.stderr.String(), "credential_expir") {
		t.Errorf("the operator's binary followed %s:\n%s", clockEnv, p.stderr)
	}
	if st := readCredentialState(w.runtime, runtimeOwner(w.t, w.runtime)); st.TokenExpiresAt == nil || !st.TokenExpiresAt.Equal(year) || st.TokenExpirySource != "created_time" {
		t.Errorf("credential.json: %+v, want %v from created_time", st, year)
	}
	w.stop(p)

	// The test build, 8748 h ahead: 12 h left of the default year.
	w.exe = clockBin(t)
	p, _ = w.runServe("--refresh-interval", "0")
	wantFields(t, w.waitEvents(p, "credential_expiring", 1)[0], "T3_EXPIRY_THRESHOLD_DAYS=1", "T3_TOKEN_DAYS_LEFT=0",
		"T3_TOKEN_EXPIRES_AT="+year.Format(time.RFC3339), "T3_TOKEN_EXPIRY_SOURCE=created_time")
	w.waitStatus("token expires in 11 hours (" + year.Format(time.DateOnly) + ")")
	w.stop(p)

	// --token-lifetime 90 days, a year ahead: long expired; the dry run says so too.
	w.setenv(clockEnv + "=8760h")
	code, dry := w.run("--no-cgroup", "--dry-run", "--token-lifetime", "2160h")
	ninety := created.Add(2160 * time.Hour).Truncate(time.Second)
	if code != 0 || !strings.Contains(dry.stdout.String(), "expires     "+ninety.Format(time.RFC3339)+" (from created_time; expired 275 days ago: a real run reports credential_expired)") {
		t.Errorf("dry run exit %d:\n%s", code, dry.stdout)
	}
	p, _ = w.runServe("--refresh-interval", "0", "--token-lifetime", "2160h")
	wantFields(t, w.waitEvents(p, "credential_expired", 1)[0], "T3_TOKEN_EXPIRES_AT="+ninety.Format(time.RFC3339), "T3_TOKEN_DAYS_LEFT=-276")
	w.waitStatus("token EXPIRED 275 days ago")
	if strings.Contains(p.stderr.String(), "credential_expiring") {
		t.Errorf("a start after the expiry also reported a threshold:\n%s", p.stderr)
	}
	w.stop(p)
}

// runtimeOwner is the uid that owns the runtime directory dir, as systemd makes
// RuntimeDirectory= the unit user's: as root the world hands its directories to the test user
// the supervisor drops to, and status reads only that user's files.
func runtimeOwner(t testing.TB, dir string) int {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}
