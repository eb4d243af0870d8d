//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The real binary against a real Vault 1.19.0 whose mount is moved, disabled or mistyped: none
// of it is an opt-out. At start-up the materialized token is used (credential_fallback), the env
// file stays byte for byte (and mtime), t3 gets the token; without a materialized token the
// start fails with the class's exit code. Before, all of these logged credential_opt_out,
// deleted the env file and started t3 without a token.
func TestMountGoneAtStartFallsBack(t *testing.T) {
	t.Parallel() // no lane: its subtests take one each
	for _, tc := range []struct {
		name  string
		fault func(w *vaultWorld) []string // returns extra flags
		code  int                          // without a materialized token
	}{
		{"secrets move", func(w *vaultWorld) []string { w.v.MoveMount("secret", "secret-moved"); return nil }, exitCredUnavailable},
		{"secrets disable", func(w *vaultWorld) []string { w.v.DisableMount("secret"); return nil }, exitCredUnavailable},
		// A token that may read anywhere (the root token) gets Vault's 404 "no handler".
		{"mistyped mount, a broad token", func(w *vaultWorld) []string {
			w.setVaultToken(w.v.RootToken)
			return []string{"--vault-path-template", "secrt/workstation/claude-users/{user}"}
		}, exitCredUnavailable},
		// The user's narrow token gets 403 for the mistyped path: denied.
		{"mistyped mount, the user's token", func(w *vaultWorld) []string {
			return []string{"--vault-path-template", "secrt/workstation/claude-users/{user}"}
		}, exitCredDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parallel(t)
			w := newVaultWorld(t)
			content := "CLAUDE_CODE_OAUTH_TOKEN=" + w.token + "\n"
			os.WriteFile(w.envFile(), []byte(content), 0o600)
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			os.Chtimes(w.envFile(), old, old)
			extra := tc.fault(w)
			p, r := w.runServe(extra...)
			if envOf(r)["CLAUDE_CODE_OAUTH_TOKEN"] != w.token {
				t.Error("t3 did not get the materialized token")
			}
			out := p.stderr.String()
			if !strings.Contains(out, "warning credential_fallback") || strings.Contains(out, "credential_opt_out") || strings.Contains(out, "env_file_removed") {
				t.Errorf("events:\n%s", out)
			}
			w.stop(p)
			b, err := os.ReadFile(w.envFile())
			st, _ := os.Stat(w.envFile())
			if err != nil || string(b) != content || !st.ModTime().Equal(old) || st.Mode().Perm() != 0o600 {
				t.Errorf("the env file changed: %v", err)
			}
			t.Log(eventLine(out, "credential_fallback"))

			// No materialized token: the start fails, says why, and starts nothing.
			w2 := newVaultWorld(t)
			extra = tc.fault(w2)
			code, p2 := w2.run(append([]string{"--no-cgroup"}, extra...)...)
			if code != tc.code || strings.Contains(p2.stderr.String(), "credential_opt_out") {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, p2.stderr)
			}
			w2.assertNothingStarted()
		})
	}
}

// A running supervisor re-reads (SIGHUP) while the mount is moved, then disabled: each outage is
// one credential_refresh_failed, t3 keeps running with its token, the env file stays byte for
// byte; never a credential_opt_out.
func TestMountGoneWhileRunningChangesNothing(t *testing.T) {
	parallel(t)
	w := newVaultWorld(t)
	p, r := w.runServe("--refresh-interval", "0")
	waitEnvFile := waitFor(func() bool { _, err := os.Stat(w.envFile()); return err == nil }, 10*time.Second)
	before, _ := os.ReadFile(w.envFile())
	st0, _ := os.Stat(w.envFile())
	if !waitEnvFile || string(before) != "CLAUDE_CODE_OAUTH_TOKEN="+w.token+"\n" {
		t.Fatalf("no env file to begin with\n%s", p.stderr)
	}
	reread := func(event string, n int) {
		t.Helper()
		// SIGHUP re-reads are at least minSpacing apart, and one too early is dropped: ask
		// until the re-read has happened.
		if !waitFor(func() bool {
			p.cmd.Process.Signal(syscall.SIGHUP)
			return strings.Count(p.stderr.String(), " "+event+": ") >= n
		}, 20*time.Second) {
			t.Fatalf("no %s #%d\n%s", event, n, p.stderr)
		}
	}
	w.v.MoveMount("secret", "secret-moved")
	reread("credential_refresh_failed", 1)
	w.v.MoveMount("secret-moved", "secret")
	reread("credential_refresh_recovered", 1)
	w.v.DisableMount("secret")
	reread("credential_refresh_failed", 2)
	out := p.stderr.String()
	for _, bad := range []string{"credential_opt_out", "env_file_removed", "credential_deleted"} {
		if strings.Contains(out, bad) {
			t.Errorf("%s while the mount was gone:\n%s", bad, out)
		}
	}
	if !strings.Contains(eventLine(out, "credential_refresh_failed"), "no handler for route") {
		t.Errorf("the failure does not say why: %s", eventLine(out, "credential_refresh_failed"))
	}
	if !processAlive(r.Pid) {
		t.Error("t3 was stopped")
	}
	after, _ := os.ReadFile(w.envFile())
	st1, _ := os.Stat(w.envFile())
	if string(after) != string(before) || !st1.ModTime().Equal(st0.ModTime()) || inodeOf(st1) != inodeOf(st0) {
		t.Error("the env file changed")
	}
	if reps, _ := w.reports(); len(reps) != 1 {
		t.Errorf("t3 started %d times", len(reps))
	}
	if code := w.stop(p); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// blockedOnFIFO: a thread of pid waits in open(2) for the other end of a FIFO.
func blockedOnFIFO(pid int) bool {
	chans, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", pid))
	for _, c := range chans {
		if b, _ := os.ReadFile(c); string(b) == "wait_for_partner" {
			return true
		}
	}
	return false
}

func inodeOf(st os.FileInfo) uint64 { return st.Sys().(*syscall.Stat_t).Ino }

// A genuine opt-out seen by a running supervisor is acted on only after a second read agrees:
// the env file is removed and the restart policy asked only once Vault said "gone" twice. The
// count of secret reads at the moment it acts is the proof (no sleep decides it).
func TestOptOutWhileRunningIsConfirmed(t *testing.T) {
	parallel(t)
	w := newVaultWorld(t)
	f := newFaultProxy(t, w.v.Addr)
	w.setenv("VAULT_ADDR=" + f.URL)
	p, _ := w.runServe("--refresh-interval", "0", "--restart-on-rotation", "always")
	if !waitFor(func() bool { _, err := os.Stat(w.envFile()); return err == nil }, 10*time.Second) {
		t.Fatal("no env file")
	}
	if err := w.v.Client.KVv2("secret").DeleteMetadata(context.Background(), "workstation/claude-users/"+w.user); err != nil {
		t.Fatal(err)
	}
	reads0 := f.reads.Load()
	p.cmd.Process.Signal(syscall.SIGHUP)
	var readsAtRemoval int64 = -1
	if !waitFor(func() bool {
		if _, err := os.Stat(w.envFile()); os.IsNotExist(err) {
			readsAtRemoval = f.reads.Load() - reads0
			return true
		}
		return false
	}, 30*time.Second) {
		t.Fatalf("the env file was never removed\n%s", p.stderr)
	}
	if code := p.wait(t, 30*time.Second); code != exitRotated {
		t.Errorf("exit %d, want %d (restart policy always)\n%s", code, exitRotated, p.stderr)
	}
	if readsAtRemoval < 2 {
		t.Errorf("the env file was removed after %d secret read(s): not confirmed", readsAtRemoval)
	}
	line := eventLine(p.stderr.String(), "credential_opt_out")
	if !strings.Contains(line, "a second read confirmed") {
		t.Errorf("opt-out event: %s", line)
	}
	t.Logf("removed after %d secret reads: %s", readsAtRemoval, line)
}

// A FIFO at the Vault token file or the AppRole secret id file hung the start for ever, deaf to
// --vault-timeout and SIGTERM. Now it is refused at once, naming the file; so is a symlink
// (even to a file the user may read).
func TestCredentialFilesRefusedAtStart(t *testing.T) {
	parallel(t)
	for _, tc := range []struct {
		name  string
		plant func(w *vaultWorld) (path string, args []string)
		want  string
	}{
		{"token file FIFO", func(w *vaultWorld) (string, []string) {
			p := filepath.Join(w.home, ".config", "claude-auth-sync", "vault-token")
			os.Remove(p)
			syscall.Mkfifo(p, 0o600)
			return p, nil
		}, "a FIFO"},
		{"token file symlink", func(w *vaultWorld) (string, []string) {
			p := filepath.Join(w.home, ".config", "claude-auth-sync", "vault-token")
			real := filepath.Join(w.home, "token-elsewhere")
			os.Rename(p, real)
			os.Symlink(real, p)
			return p, nil
		}, "symlink"},
		{"AppRole secret id FIFO", func(w *vaultWorld) (string, []string) {
			os.Remove(filepath.Join(w.home, ".config", "claude-auth-sync", "vault-token"))
			p := filepath.Join(w.home, "secret-id")
			syscall.Mkfifo(p, 0o600)
			return p, []string{"--approle-role-id", "role", "--approle-secret-id-file", p}
		}, "a FIFO"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newVaultWorld(t)
			path, args := tc.plant(w)
			start := time.Now()
			code, p := w.run(append([]string{"--no-cgroup", "--vault-timeout", "30s"}, args...)...)
			if code != exitConfig || time.Since(start) > 10*time.Second {
				t.Errorf("exit %d after %v, want %d at once\n%s", code, time.Since(start), exitConfig, p.stderr)
			}
			line := eventLine(p.stderr.String(), "credential_failed")
			if !strings.Contains(line, path) || !strings.Contains(line, tc.want) {
				t.Errorf("the failure does not name %s and %q: %s", path, tc.want, line)
			}
			w.assertNothingStarted()

			if tc.want != "a FIFO" {
				return
			}
			// Had it blocked opening the FIFO, a SIGTERM must still end it: the condition is
			// "exited, or blocked in open(2) of a FIFO" (the kernel's wait_for_partner).
			w2 := newVaultWorld(t)
			tc.plant(w2)
			p2 := w2.start(append([]string{"--no-cgroup", "--vault-timeout", "30s"}, args...)...)
			exited := func() bool {
				select {
				case <-p2.done:
					return true
				default:
					return false
				}
			}
			if !waitFor(func() bool { return exited() || blockedOnFIFO(p2.cmd.Process.Pid) }, 10*time.Second) {
				t.Fatal("neither exited nor blocked on the FIFO")
			}
			p2.cmd.Process.Signal(syscall.SIGTERM)
			start = time.Now()
			if code := p2.wait(t, 15*time.Second); (code != 0 && code != exitConfig) || time.Since(start) > 5*time.Second {
				t.Errorf("exit %d %v after SIGTERM\n%s", code, time.Since(start), p2.stderr)
			}
			w2.assertNothingStarted()
		})
	}
}

// credential_failed says why no materialized token takes Vault's place, and is not logged at
// all for a stop during start-up.
func TestCredentialFailedSaysWhy(t *testing.T) {
	parallel(t)
	w := newVaultWorld(t)
	code, p := w.run("--no-cgroup", "--vault-token-file", filepath.Join(w.home, "no-such-token"))
	if line := eventLine(p.stderr.String(), "credential_failed"); code != exitConfig || !strings.Contains(line, "no earlier one is materialized at "+w.envFile()) {
		t.Errorf("exit %d: %s", code, line)
	}
	os.WriteFile(w.envFile(), []byte("CLAUDE_CODE_OAUTH_TOKEN="+w.token+"\n"), 0o600)
	code, p = w.run("--no-cgroup", "--vault-token-file", filepath.Join(w.home, "no-such-token"))
	line := eventLine(p.stderr.String(), "credential_failed")
	if code != exitConfig || !strings.Contains(line, "is not used in its place") || strings.Contains(line, "no earlier one") {
		t.Errorf("exit %d with a materialized token: %s", code, line)
	}
	os.Chmod(w.envFile(), 0o644)
	w.v.Stop()
	code, p = w.run("--no-cgroup", "--vault-timeout", "2s")
	line = eventLine(p.stderr.String(), "credential_failed")
	if code != exitCredUnavailable || !strings.Contains(line, "cannot be used") || !strings.Contains(line, "mode 0644") {
		t.Errorf("exit %d with an unusable materialized token: %s", code, line)
	}
}

// The dry run says exactly what the real run does with the env file: a refusal with its
// reason (a symlink, a directory others may write), the directories it creates; and neither
// run changes the mode of a directory that exists ($HOME included).
func TestDryRunSaysWhatHappensToTheEnvFile(t *testing.T) {
	parallel(t)
	dryRun := func(t *testing.T, w *vaultWorld, extra ...string) (text string, ef map[string]any) {
		t.Helper()
		code, p := w.run(append([]string{"--no-cgroup", "--dry-run"}, extra...)...)
		if code != 0 {
			t.Fatalf("dry run exit %d\n%s%s", code, p.stdout, p.stderr)
		}
		text = p.stdout.String()
		code, p = w.run(append([]string{"--no-cgroup", "--dry-run", "--output", "json"}, extra...)...)
		var plan map[string]any
		if code != 0 || json.Unmarshal(p.stdout.Bytes(), &plan) != nil {
			t.Fatalf("json dry run: %d %s", code, p.stdout)
		}
		return text, plan["env_file"].(map[string]any)
	}
	t.Run("symlink", func(t *testing.T) {
		w := newVaultWorld(t)
		target := filepath.Join(w.home, "precious")
		os.WriteFile(target, []byte("precious\n"), 0o600)
		os.Symlink(target, w.envFile())
		text, ef := dryRun(t, w)
		if !strings.Contains(text, "refuse      "+w.envFile()) || !strings.Contains(text, "is a symlink: refusing to write through it") {
			t.Errorf("dry run:\n%s", text)
		}
		reason, _ := ef["reason"].(string)
		if ef["action"] != "refuse" || !strings.Contains(reason, "symlink") {
			t.Fatalf("json %v", ef)
		}
		p, _ := w.runServe()
		w.stop(p)
		if !strings.Contains(p.stderr.String(), "env_file_failed: "+reason) {
			t.Errorf("the real run does not refuse as the dry run said:\n%s", p.stderr)
		}
		if b, _ := os.ReadFile(target); string(b) != "precious\n" {
			t.Error("written through the symlink")
		}
	})
	t.Run("directory others may write", func(t *testing.T) {
		w := newVaultWorld(t)
		dir := filepath.Dir(w.envFile())
		os.Chmod(dir, 0o777)
		text, ef := dryRun(t, w)
		if !strings.Contains(text, "refuse") || !strings.Contains(text, "chmod go-w "+dir) || ef["action"] != "refuse" {
			t.Errorf("dry run:\n%s\n%v", text, ef)
		}
		p, _ := w.runServe()
		w.stop(p)
		if st, _ := os.Stat(dir); st.Mode().Perm() != 0o777 {
			t.Errorf("the directory was chmodded to %04o", st.Mode().Perm())
		}
		if _, err := os.Stat(w.envFile()); err == nil {
			t.Error("written into a directory others may write")
		}
	})
	t.Run("new directories, HOME untouched", func(t *testing.T) {
		w := newVaultWorld(t)
		os.Chmod(w.home, 0o755)
		envFile := filepath.Join(w.home, "new", "sub", "claude-oauth.env")
		text, ef := dryRun(t, w, "--env-file", envFile)
		for _, d := range []string{filepath.Join(w.home, "new"), filepath.Join(w.home, "new", "sub")} {
			if !strings.Contains(text, "mkdir       "+d+" (mode 0700)") {
				t.Errorf("dry run does not say mkdir %s:\n%s", d, text)
			}
		}
		if mkdir, _ := ef["mkdir"].([]any); ef["action"] != "write" || len(mkdir) != 2 || strings.Contains(text, "chmod") {
			t.Errorf("json %v", ef)
		}
		p, _ := w.runServe("--env-file", envFile)
		w.stop(p)
		for _, d := range []string{filepath.Join(w.home, "new"), filepath.Join(w.home, "new", "sub")} {
			if st, err := os.Stat(d); err != nil || st.Mode().Perm() != 0o700 {
				t.Errorf("%s: %v", d, err)
			}
		}
		// The env file straight in HOME: written, HOME keeps 0755.
		os.Remove(w.out) // a fresh report of the fake t3 for this run
		p, _ = w.runServe("--env-file", filepath.Join(w.home, "claude-oauth.env"))
		w.stop(p)
		if st, _ := os.Stat(w.home); st.Mode().Perm() != 0o755 {
			t.Errorf("HOME chmodded to %04o", st.Mode().Perm())
		}
		if _, err := os.Stat(filepath.Join(w.home, "claude-oauth.env")); err != nil {
			t.Errorf("%v\n%s", err, p.stderr)
		}
	})
}

// $CREDENTIALS_DIRECTORY/vault-token (an operator's LoadCredential= from a root-owned path) is
// read first when it is there; a credentials directory without one (another credential of the
// unit's) no longer hides the home file.
func TestTokenFileFromCredentialsDirectory(t *testing.T) {
	w := newVaultWorld(t)
	creds := filepath.Join(w.dir, "credentials")
	os.Mkdir(creds, 0o700)
	w.setenv("CREDENTIALS_DIRECTORY=" + creds)
	tokenFile := func() string {
		t.Helper()
		code, p := w.run("--no-cgroup", "--dry-run", "--output", "json")
		var plan struct {
			Credential struct {
				Outcome   string `json:"outcome"`
				TokenFile string `json:"vault_token_file"`
			} `json:"credential"`
		}
		if code != 0 || json.Unmarshal(p.stdout.Bytes(), &plan) != nil || plan.Credential.Outcome != "found" {
			t.Fatalf("dry run exit %d: %s%s", code, p.stdout, p.stderr)
		}
		return plan.Credential.TokenFile
	}
	if got, want := tokenFile(), filepath.Join(w.home, ".config", "claude-auth-sync", "vault-token"); got != want {
		t.Errorf("without a vault-token in $CREDENTIALS_DIRECTORY: %s, want %s", got, want)
	}
	os.WriteFile(filepath.Join(creds, "vault-token"), []byte(w.vaultToken+"\n"), 0o600)
	if got, want := tokenFile(), filepath.Join(creds, "vault-token"); got != want {
		t.Errorf("with one: %s, want %s", got, want)
	}
}
