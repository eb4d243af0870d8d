//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"t3-supervise/internal/vaulttest"
)

// vaultWorld is a world with a real Vault dev server holding the current user's token, and a
// token file at the default location.
type vaultWorld struct {
	*world
	v          *vaulttest.Server
	user       string
	token      string                // the fake setup token in Vault
	vaultToken string                // the user's Vault token, in the token file
	persistent *vaulttest.Persistent // set when the server can be restarted
}

// setVaultToken replaces the user's Vault token in the token file.
func (w *vaultWorld) setVaultToken(tok string) {
	w.vaultToken = tok
	p := filepath.Join(w.home, ".config", "claude-auth-sync", "vault-token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		w.t.Fatal(err)
	}
}

func newVaultWorld(t *testing.T) *vaultWorld {
	t.Helper()
	return newVaultWorldOn(t, vaulttest.Start(t))
}

// newVaultWorldOn is newVaultWorld on a given server (a persistent one, to restart it).
func newVaultWorldOn(t *testing.T, v *vaulttest.Server) *vaultWorld {
	t.Helper()
	w := &vaultWorld{world: newWorld(t), v: v, user: runUser, token: vaulttest.FakeToken()}
	policy := "workstation-claude-" + w.user
	v.Policy(policy, "workstation/claude-users/"+w.user)
	v.Put("workstation/claude-users/"+w.user, map[string]any{"setup_token": w.token})
	dir := filepath.Join(w.home, ".config", "claude-auth-sync")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	w.setVaultToken(v.Token(0, policy))
	w.setenv("VAULT_ADDR=" + v.Addr)
	t.Cleanup(func() { w.scanForToken(w.token) })
	return w
}

func (w *vaultWorld) envFile() string {
	return filepath.Join(w.home, ".config", "claude-auth-sync", "claude-oauth.env")
}

// scanForToken fails the test when tok shows up anywhere the supervisor wrote except the env
// file: its output, the fake's report of its argv, the journal.
func (w *vaultWorld) scanForToken(tok string) {
	for _, p := range w.procs {
		for name, s := range map[string]string{"stdout": p.stdout.String(), "stderr": p.stderr.String()} {
			if strings.Contains(s, tok) {
				w.t.Errorf("the token appears on the supervisor's %s", name)
			}
		}
	}
	reps, _ := w.reports()
	for _, r := range reps {
		if strings.Contains(strings.Join(r.Argv, " "), tok) {
			w.t.Errorf("the token appears in t3's argv")
		}
	}
}

func (w *vaultWorld) runServe(extra ...string) (*proc, fakeReport) {
	w.t.Helper()
	p := w.start(append([]string{"--no-cgroup"}, extra...)...)
	return p, w.waitStarted(p)
}

func (w *vaultWorld) stop(p *proc) int {
	w.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	return p.wait(w.t, 30*time.Second)
}

func TestTokenInjectedAndMaterialized(t *testing.T) {
	parallel(t)
	w := newVaultWorld(t)
	w.setenv("VAULT_TOKEN=hvs.should-not-leak", "NOTIFY_SOCKET=/nonexistent/notify", "WATCHDOG_USEC=1000000",
		"CREDENTIALS_DIRECTORY=", "VAULT_NAMESPACE=", "SOME_RANDOM=1", "T3CODE_FLAG=on")
	p, r := w.runServe("--", "serve", "--host", "0.0.0.0", "--port", "3773", "--base-dir", w.home+"/.t3")
	env := envOf(r)
	if env["CLAUDE_CODE_OAUTH_TOKEN"] != w.token {
		t.Errorf("t3 did not get the user's token (got %d chars)", len(env["CLAUDE_CODE_OAUTH_TOKEN"]))
	}
	for _, k := range []string{"VAULT_TOKEN", "VAULT_ADDR", "NOTIFY_SOCKET", "WATCHDOG_USEC", "CREDENTIALS_DIRECTORY", "SOME_RANDOM", "VAULT_NAMESPACE"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s reached t3", k)
		}
	}
	for _, k := range []string{"HOME", "PATH", "T3_PORT", "T3CODE_FLAG", "LANG"} {
		if _, ok := env[k]; !ok {
			t.Errorf("%s did not reach t3", k)
		}
	}
	want := []string{"serve", "--host", "0.0.0.0", "--port", "3773", "--base-dir", w.home + "/.t3"}
	if strings.Join(r.Argv[1:], " ") != strings.Join(want, " ") {
		t.Errorf("argv %q, want %q", r.Argv[1:], want)
	}
	if asRoot && r.UID != nobodyUID {
		t.Errorf("started as root with --user nobody, t3 ran as uid %d", r.UID)
	}
	// The supervisor holds the token in memory only: not in its argv, not in its environment.
	for _, f := range []string{"cmdline", "environ"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", p.cmd.Process.Pid, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), w.token) {
			t.Errorf("the token is in the supervisor's /proc/PID/%s", f)
		}
	}
	b, err := os.ReadFile(w.envFile())
	if err != nil || string(b) != "CLAUDE_CODE_OAUTH_TOKEN="+w.token+"\n" {
		t.Errorf("env file: %v (%d bytes)", err, len(b))
	}
	st, _ := os.Stat(w.envFile())
	if st.Mode().Perm() != 0o600 {
		t.Errorf("env file mode %04o", st.Mode().Perm())
	}
	if code := w.stop(p); code != 0 {
		t.Errorf("exit %d after SIGTERM\n%s", code, p.stderr)
	}
	if _, notes := w.reports(); !strings.Contains(strings.Join(notes, "\n"), "signal terminated") {
		t.Errorf("t3 did not get SIGTERM: %v", notes)
	}
	for _, ev := range []string{"credential_found", "env_file_written", "child_started", "stopping", "stopped"} {
		if !strings.Contains(p.stderr.String(), " "+ev+": ") {
			t.Errorf("no %s event on stderr:\n%s", ev, p.stderr)
		}
	}
}

func TestOptOutRemovesTheEnvFileAndStartsWithoutToken(t *testing.T) {
	parallel(t)
	w := newVaultWorld(t)
	// A token from an earlier opt-in, and one inherited from the old unit's EnvironmentFile=.
	os.WriteFile(w.envFile(), []byte("CLAUDE_CODE_OAUTH_TOKEN="+w.token+"\n"), 0o600)
	w.setenv("CLAUDE_CODE_OAUTH_TOKEN=" + w.token)
	if err := w.v.Client.KVv2("secret").DeleteMetadata(context.Background(), "workstation/claude-users/"+w.user); err != nil {
		t.Fatal(err)
	}
	p, r := w.runServe()
	if _, ok := envOf(r)["CLAUDE_CODE_OAUTH_TOKEN"]; ok {
		t.Error("an opted-out user's t3 got a token")
	}
	if _, err := os.Stat(w.envFile()); !os.IsNotExist(err) {
		t.Errorf("env file still there after the opt-out: %v", err)
	}
	// The events precede t3's start, but reach p.stderr through the pipe's copying goroutine.
	if !waitFor(func() bool {
		return strings.Contains(p.stderr.String(), "credential_opt_out") && strings.Contains(p.stderr.String(), "env_file_removed")
	}, 10*time.Second) {
		t.Errorf("events:\n%s", p.stderr)
	}
	w.stop(p)
}

func TestVaultDownFallsBackAndNeverDeletes(t *testing.T) {
	parallel(t)
	w := newVaultWorld(t)
	content := "CLAUDE_CODE_OAUTH_TOKEN=" + w.token + "\n"
	os.WriteFile(w.envFile(), []byte(content), 0o600)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(w.envFile(), old, old)
	w.v.Stop()
	p, r := w.runServe("--vault-timeout", "3s")
	if envOf(r)["CLAUDE_CODE_OAUTH_TOKEN"] != w.token {
		t.Error("t3 did not get the materialized token")
	}
	if !strings.Contains(p.stderr.String(), "warning credential_fallback") {
		t.Errorf("no fallback warning:\n%s", p.stderr)
	}
	w.stop(p)
	b, err := os.ReadFile(w.envFile())
	st, _ := os.Stat(w.envFile())
	if err != nil || string(b) != content || !st.ModTime().Equal(old) {
		t.Errorf("the env file was touched during an outage: %v", err)
	}
}

func TestCredentialFailuresWithoutFallback(t *testing.T) {
	parallel(t)
	t.Run("unavailable", func(t *testing.T) {
		w := newVaultWorld(t)
		w.v.Stop()
		code, p := w.run("--no-cgroup", "--vault-timeout", "3s")
		if code != exitCredUnavailable {
			t.Errorf("exit %d, want %d\n%s", code, exitCredUnavailable, p.stderr)
		}
		w.assertNothingStarted()
	})
	t.Run("denied", func(t *testing.T) {
		w := newVaultWorld(t)
		bad := w.v.Token(0, "default") // may look itself up, may not read the user's path
		os.WriteFile(filepath.Join(w.home, ".config", "claude-auth-sync", "vault-token"), []byte(bad), 0o600)
		code, p := w.run("--no-cgroup")
		if code != exitCredDenied || !strings.Contains(p.stderr.String(), "claude-users/"+w.user) {
			t.Errorf("exit %d, want %d naming the path\n%s", code, exitCredDenied, p.stderr)
		}
		w.assertNothingStarted()
	})
	for name, bad := range map[string]string{
		"short":       "sk-ant-oat01-oops",
		"newline":     "sk-ant-oat01-AAAAAAAAAAAAAAAAAAAAAAAA\nEVIL=1",
		"equals":      "sk-ant-oat01-AAAAAAAAAAAAAAAAAAAAAAAA=x",
		"shell":       "sk-ant-oat01-AAAAAAAAAAAAAAAAAAAAAAAA$(touch /tmp/pwned)",
		"other token": "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	} {
		t.Run("malformed "+name, func(t *testing.T) {
			w := newVaultWorld(t)
			w.v.Put("workstation/claude-users/"+w.user, map[string]any{"setup_token": bad})
			code, p := w.run("--no-cgroup")
			if code != exitCredInvalid {
				t.Errorf("exit %d, want %d\n%s", code, exitCredInvalid, p.stderr)
			}
			if strings.Contains(p.stderr.String(), bad[13:]) {
				t.Error("the malformed value was printed")
			}
			w.assertNothingStarted()
		})
	}
}

func (w *world) assertNothingStarted() {
	w.t.Helper()
	if _, err := os.Stat(w.out); err == nil {
		w.t.Error("t3 was started")
	}
	if _, err := os.Stat(filepath.Join(w.home, ".config", "claude-auth-sync", "claude-oauth.env")); err == nil {
		w.t.Error("the env file was written")
	}
}

func TestInheritedForeignTokenDropped(t *testing.T) {
	parallel(t)
	w := newVaultWorld(t)
	foreign := vaulttest.FakeToken()
	w.setenv("CLAUDE_CODE_OAUTH_TOKEN=" + foreign)
	p, r := w.runServe()
	if got := envOf(r)["CLAUDE_CODE_OAUTH_TOKEN"]; got != w.token {
		t.Errorf("t3 got the inherited token instead of the user's own")
	}
	if !strings.Contains(p.stderr.String(), "warning inherited_token_dropped") {
		t.Errorf("no warning:\n%s", p.stderr)
	}
	w.stop(p)
	w.scanForToken(foreign)
}

// --dry-run really talks to Vault, prints the plan, and writes or starts nothing.
func TestDryRun(t *testing.T) {
	parallel(t)
	w := newVaultWorld(t)
	code, p := w.run("--no-cgroup", "--dry-run", "--", "serve", "--port", "3773")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, p.stdout, p.stderr)
	}
	out := p.stdout.String()
	fp := "sha256:"
	for _, want := range []string{"found (from vault)", "secret/workstation/claude-users/" + w.user, "KV v2, version 1",
		"token-file", fp, "write", w.envFile(), "serve --port 3773", "CLAUDE_CODE_OAUTH_TOKEN=<redacted>",
		"HOME=" + w.home, "disabled (--no-cgroup)", "would start"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, out)
		}
	}
	w.assertNothingStarted()

	code, p = w.run("--no-cgroup", "--dry-run", "--output", "json")
	var plan map[string]any
	if code != 0 || json.Unmarshal(p.stdout.Bytes(), &plan) != nil {
		t.Fatalf("json dry-run: %d %s", code, p.stdout)
	}
	cred := plan["credential"].(map[string]any)
	if cred["outcome"] != "found" || cred["kv_version"].(float64) != 2 || !strings.HasPrefix(cred["fingerprint"].(string), "sha256:") {
		t.Errorf("credential %v", cred)
	}
	if plan["env_file"].(map[string]any)["action"] != "write" {
		t.Errorf("env_file %v", plan["env_file"])
	}
	w.assertNothingStarted()

	// A run that would fail: the dry run says so and exits with the same code.
	w.v.Stop()
	code, p = w.run("--no-cgroup", "--dry-run", "--vault-timeout", "2s")
	if code != exitCredUnavailable || !strings.Contains(p.stdout.String(), "would FAIL") {
		t.Errorf("exit %d\n%s", code, p.stdout)
	}
	w.assertNothingStarted()
}

func TestExitCodesPassThrough(t *testing.T) {
	parallel(t)
	for _, tc := range []struct {
		mode string
		code int
	}{
		// t3's own 0 and 64-78 become 74: an exit nobody asked for is never a clean stop, and
		// never one of the supervisor's own classes that RestartPreventExitStatus= keeps down.
		{"exit:0", exitT3Exited}, {"exit:3", 3}, {"exit:42", 42}, {"exit:64", exitT3Exited}, {"exit:77", exitT3Exited},
		{"exit:78", exitT3Exited}, {"exit:79", 79}, {"signal-self:9", 137}, {"signal-self:15", 143},
	} {
		w := newVaultWorld(t)
		w.setenv("T3_FAKE_MODE=" + tc.mode)
		code, p := w.run("--no-cgroup")
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d\n%s", tc.mode, code, tc.code, p.stderr)
		}
		if !strings.Contains(p.stderr.String(), "child_exited") {
			t.Errorf("%s: no child_exited event", tc.mode)
		}
	}
	w := newVaultWorld(t)
	code, _ := w.run("--no-cgroup", "--t3-bin", "no-such-t3")
	if code != exitNotFound {
		t.Errorf("missing t3: exit %d", code)
	}
}

// SIGTERM: t3 gets SIGTERM, then, when it ignores it, everything it spawned gets SIGKILL after
// --stop-timeout, setsid'd grandchildren included. SIGHUP is not forwarded.
func TestStopAndSignals(t *testing.T) {
	parallel(t)
	w := newVaultWorld(t)
	w.setenv("T3_FAKE_MODE=orphan")
	p, r := w.runServe()
	grand := w.waitNote("grandchild ")
	gpid := atoiOr0(strings.TrimPrefix(grand, "grandchild "))
	for i := 0; i < 3; i++ {
		p.cmd.Process.Signal(syscall.SIGHUP)
	}
	if !waitFor(func() bool { return strings.Contains(p.stderr.String(), " signal: SIGHUP") }, 10*time.Second) {
		t.Fatalf("no signal event for SIGHUP\n%s", p.stderr)
	}
	if code := w.stop(p); code != 0 {
		t.Errorf("exit %d", code)
	}
	// The fake notes every signal it gets, in order: a forwarded SIGHUP would precede SIGTERM's.
	if _, notes := w.reports(); !slices.Contains(notes, "signal terminated") || slices.Contains(notes, "signal hangup") {
		t.Errorf("t3's signals: %q; want SIGTERM only", notes)
	}
	for _, pid := range []int{r.Pid, gpid} {
		if processAlive(pid) {
			t.Errorf("pid %d survived the stop", pid)
		}
	}

	w = newVaultWorld(t)
	w.setenv("T3_FAKE_MODE=ignore-term")
	p, r = w.runServe("--stop-timeout", "1s")
	start := time.Now()
	code := w.stop(p)
	took := time.Since(start)
	if code != 0 || took < time.Second || took > 10*time.Second {
		t.Errorf("exit %d after %v", code, took)
	}
	if !strings.Contains(p.stderr.String(), "stop_escalated") {
		t.Errorf("no stop_escalated event:\n%s", p.stderr)
	}
	if processAlive(r.Pid) {
		t.Error("t3 survived")
	}
}

func atoiOr0(s string) int {
	n := 0
	for _, c := range strings.TrimSpace(s) {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// A new KV version reaches the env file and the journal on SIGHUP; an outage during a re-read
// changes nothing and is reported once, however many re-reads fail in it.
func TestRotationWithRealVault(t *testing.T) {
	parallel(t)
	w := newVaultWorld(t)
	runtime := filepath.Join(w.dir, "runtime")
	if err := os.Mkdir(runtime, 0o755); err != nil {
		t.Fatal(err)
	}
	w.setenv("RUNTIME_DIRECTORY=" + runtime)
	p, _ := w.runServe("--refresh-interval", "0")
	newTok := vaulttest.FakeToken()
	w.v.Put("workstation/claude-users/"+w.user, map[string]any{"setup_token": newTok})
	p.cmd.Process.Signal(syscall.SIGHUP)
	if !waitFor(func() bool {
		b, _ := os.ReadFile(w.envFile())
		return string(b) == "CLAUDE_CODE_OAUTH_TOKEN="+newTok+"\n"
	}, 15*time.Second) {
		t.Fatalf("the env file did not follow the rotation\n%s", p.stderr)
	}
	if !waitFor(func() bool { return strings.Contains(p.stderr.String(), "credential_rotated") }, 5*time.Second) ||
		!strings.Contains(p.stderr.String(), "T3_KV_VERSION=2") {
		t.Errorf("no rotation event:\n%s", p.stderr)
	}
	w.v.Stop()
	// Re-reads into the outage, as many SIGHUPs ask for (at most one a second), until the
	// supervisor's state file counts two failed ones: still one event. (The event of a re-read
	// is written before the state file counts it.)
	failed := func() uint64 {
		if st := readState(runtime, runtimeOwner(t, runtime)); st != nil {
			return st.VaultRefreshFailures
		}
		return 0
	}
	if !waitFor(func() bool {
		p.cmd.Process.Signal(syscall.SIGHUP)
		return failed() >= 2
	}, 30*time.Second) {
		t.Fatalf("%d failed re-reads counted in 30 s of SIGHUPs into an outage\n%s", failed(), p.stderr)
	}
	if n := strings.Count(p.stderr.String(), "credential_refresh_failed"); n != 1 {
		t.Errorf("%d refresh failure events for one outage of %d failed re-reads:\n%s", n, failed(), p.stderr)
	}
	if b, _ := os.ReadFile(w.envFile()); string(b) != "CLAUDE_CODE_OAUTH_TOKEN="+newTok+"\n" {
		t.Error("the outage changed the env file")
	}
	if code := w.stop(p); code != 0 {
		t.Errorf("exit %d", code)
	}
	w.scanForToken(newTok)
}

func TestRotationRestartAlways(t *testing.T) {
	parallel(t)
	w := newVaultWorld(t)
	w.exe = shortRefreshBin(t)
	p, _ := w.runServe("--refresh-interval", "2s", "--restart-on-rotation", "always")
	w.v.Put("workstation/claude-users/"+w.user, map[string]any{"setup_token": vaulttest.FakeToken()})
	if code := p.wait(t, 30*time.Second); code != exitRotated {
		t.Errorf("exit %d, want %d\n%s", code, exitRotated, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "rotation_restart") {
		t.Errorf("no rotation_restart event:\n%s", p.stderr)
	}
}
