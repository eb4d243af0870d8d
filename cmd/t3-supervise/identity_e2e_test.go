//go:build linux

package main

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"t3-supervise/internal/testenv"
	"t3-supervise/internal/vaulttest"
)

// userdb is held around useradd and userdel, whose tests run in parallel: both rewrite
// /etc/passwd, /etc/group and /etc/shadow under lock files, and one that cannot get a lock in
// time fails ("cannot lock /etc/passwd; try again later", useradd(8) exit 1) instead of queueing.
var userdb sync.Mutex

// newTestUser makes a real user on this host for one test (useradd(8)), with home as its home
// and /bin/sh as its shell, and deletes it afterwards. extra goes to useradd.
func newTestUser(t *testing.T, home string, extra ...string) *user.User {
	t.Helper()
	testenv.NeedRoot(t)
	b := make([]byte, 4)
	rand.Read(b)
	name := "t3s-" + hex.EncodeToString(b)
	args := append([]string{"--home-dir", home, "--no-create-home", "--shell", "/bin/sh"}, extra...)
	userdb.Lock()
	out, err := exec.Command("useradd", append(args, name)...).CombinedOutput()
	userdb.Unlock()
	if err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		userdb.Lock()
		defer userdb.Unlock()
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// fallbackWorld is a world that starts t3 without a Vault: the server is unreachable and an
// earlier token is materialized, so the supervisor falls back to it (credential_fallback).
func fallbackWorld(t *testing.T) *world {
	t.Helper()
	w := newWorld(t)
	dir := filepath.Join(w.home, ".config", "claude-auth-sync")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "vault-token"), []byte("hvs.not-a-real-token\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "claude-oauth.env"), []byte("CLAUDE_CODE_OAUTH_TOKEN="+vaulttest.FakeToken()+"\n"), 0o600)
	w.setenv("VAULT_ADDR=http://127.0.0.1:1", "VAULT_MAX_RETRIES=0")
	return w
}

// Started as root with --user, t3 gets the user's identity (passwd entry), not root's: HOME,
// USER, LOGNAME, SHELL; and XDG_RUNTIME_DIR only when it is really the user's.
func TestRootDropGivesT3TheUsersIdentity(t *testing.T) {
	parallel(t)
	testenv.NeedRoot(t)
	for _, tc := range []struct {
		name   string
		xdg    func(w *world) string // the inherited XDG_RUNTIME_DIR
		wantOK bool                  // t3 gets that value (else none)
	}{
		{"root's runtime dir", func(*world) string { return "/run/user/0" }, false},
		{"the user's own runtime dir", func(w *world) string {
			d := filepath.Join(w.dir, "xdg")
			os.Mkdir(d, 0o700) // handed to the user with everything in the world
			return d
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := fallbackWorld(t)
			u := newTestUser(t, w.home)
			w.user = u.Username
			xdg := tc.xdg(w)
			// What root's environment looks like under sudo -i or a root shell.
			w.setenv("HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/bash", "XDG_RUNTIME_DIR="+xdg)
			p := w.start("--no-cgroup")
			r := w.waitStarted(p)
			env := envOf(r)
			want := map[string]string{"HOME": w.home, "USER": u.Username, "LOGNAME": u.Username, "SHELL": "/bin/sh"}
			for k, v := range want {
				if env[k] != v {
					t.Errorf("t3's %s=%q, want %q", k, env[k], v)
				}
			}
			got, has := env["XDG_RUNTIME_DIR"]
			if tc.wantOK && got != xdg {
				t.Errorf("t3's XDG_RUNTIME_DIR=%q, want the user's own %q", got, xdg)
			}
			if !tc.wantOK && has {
				t.Errorf("t3 got XDG_RUNTIME_DIR=%q, which is not %s's", got, u.Username)
			}
			if uid := u.Uid; r.UID != atoiOr0(uid) {
				t.Errorf("t3 runs as uid %d, want %s", r.UID, uid)
			}
			p.cmd.Process.Signal(os.Interrupt)
			if code := p.wait(t, 30*time.Second); code != 0 {
				t.Errorf("exit %d\n%s", code, p.stderr)
			}
		})
	}
}

// A user whose primary group is 0 would run t3 and its agents with group root: refused before
// anything starts, naming the user.
func TestRootDropRefusesPrimaryGroupZero(t *testing.T) {
	parallel(t)
	w := fallbackWorld(t)
	u := newTestUser(t, w.home, "--no-user-group", "--gid", "0")
	w.user = u.Username
	code, p := w.run("--no-cgroup")
	if code != exitConfig || !strings.Contains(p.stderr.String(), "--user "+u.Username) ||
		!strings.Contains(p.stderr.String(), "primary group is 0") {
		t.Errorf("exit %d, want %d naming the user and group 0\n%s", code, exitConfig, p.stderr)
	}
	if _, err := os.Stat(w.out); err == nil {
		t.Error("t3 was started")
	}
}
