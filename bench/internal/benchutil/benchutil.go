//go:build linux

// Package benchutil is what the benchmark programs share: a real Vault dev server holding the
// current user's token (through internal/vaulttest), Vault Agent's configuration for the same
// secret, and the statistics they print.
package benchutil

import (
	"fmt"
	"log"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"time"

	"t3-supervise/internal/vaulttest"
)

// T satisfies vaulttest.T for a program: failures end it.
type T struct {
	dir      string
	cleanups []func()
}

// NewT makes a T with its own temporary directory (0755: under root the supervisor runs as
// nobody and must reach what is in it).
func NewT() *T {
	dir, err := os.MkdirTemp("", "t3s-bench-")
	if err != nil {
		log.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	return &T{dir: dir}
}

func (t *T) Helper()                           {}
func (t *T) Fatalf(format string, args ...any) { t.Close(); log.Fatalf(format, args...) }
func (t *T) Logf(format string, args ...any)   { log.Printf(format, args...) }
func (t *T) Failed() bool                      { return false }
func (t *T) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }

// TempDir returns a new directory under the T's own, owned by the user the supervisor runs as.
func (t *T) TempDir() string {
	d, err := os.MkdirTemp(t.dir, "")
	if err != nil {
		t.Fatalf("%v", err)
	}
	os.Chmod(d, 0o755)
	if os.Geteuid() == 0 {
		os.Chown(d, nobody, nobody)
	}
	return d
}

const nobody = 65534

// Install copies an executable into the T's directory, where the run user can execute it (the
// checkout or go run's build directory may be private to root). It returns the copy's path.
func (t *T) Install(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	to := filepath.Join(t.dir, filepath.Base(path))
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	return to
}

// Close runs the cleanups and removes the directory.
func (t *T) Close() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
	os.RemoveAll(t.dir)
}

// World is a Vault dev server with the run user's setup token at the production path, a
// periodic token allowed to read only that path, and a HOME whose token file holds it.
type World struct {
	Vault     *vaulttest.Server
	User      string   // the user t3-supervise runs as: the current one, or nobody under root
	UserArgs  []string // the flags that make t3-supervise that user
	Token     string   // the fake setup token
	VaultTok  string   // the user's Vault token
	Home      string
	TokenFile string
}

// VaultBin is the Vault binary: T3S_VAULT_BIN, else test/vault/build's cache.
func VaultBin() (string, error) {
	bin := os.Getenv(vaulttest.EnvBin)
	if bin == "" {
		cache := os.Getenv("T3S_CACHE")
		if cache == "" {
			base, _ := os.UserCacheDir()
			cache = filepath.Join(base, "t3-supervise")
		}
		bin = filepath.Join(cache, "vault-1.19.0")
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("no Vault binary at %s: run test/vault/build (or make vault)", bin)
	}
	return bin, nil
}

// NewWorld starts it.
func NewWorld(t *T) *World {
	bin, err := VaultBin()
	if err != nil {
		t.Fatalf("%v", err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatalf("%v", err)
	}
	v := vaulttest.StartBin(t, bin)
	w := &World{Vault: v, User: me.Username, Token: vaulttest.FakeToken(), Home: t.TempDir()}
	if me.Uid == "0" {
		// t3-supervise never runs t3 as root; started as root it drops to --user.
		w.User, w.UserArgs = "nobody", []string{"--user", "nobody"}
	}
	policy := "workstation-claude-" + w.User
	v.Policy(policy, "workstation/claude-users/"+w.User)
	v.Put("workstation/claude-users/"+w.User, map[string]any{"setup_token": w.Token})
	w.VaultTok = v.Token(768*time.Hour, policy)
	dir := filepath.Join(w.Home, ".config", "claude-auth-sync")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("%v", err)
	}
	w.TokenFile = filepath.Join(dir, "vault-token")
	if err := os.WriteFile(w.TokenFile, []byte(w.VaultTok+"\n"), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	if me.Uid == "0" {
		for _, p := range []string{filepath.Join(w.Home, ".config"), dir, w.TokenFile} {
			os.Chown(p, nobody, nobody)
		}
	}
	return w
}

// AgentConfig writes a Vault Agent configuration in process supervisor mode that injects the
// same secret as CLAUDE_CODE_OAUTH_TOKEN into argv, authenticating with the same token file.
func (w *World) AgentConfig(dir string, argv []string) string {
	quoted := ""
	for i, a := range argv {
		if i > 0 {
			quoted += ", "
		}
		quoted += fmt.Sprintf("%q", a)
	}
	cfg := fmt.Sprintf(`vault {
  address = %q
}
auto_auth {
  method {
    type = "token_file"
    config = {
      token_file_path = %q
    }
  }
}
template_config {
  exit_on_retry_failure = true
}
env_template "CLAUDE_CODE_OAUTH_TOKEN" {
  contents             = "{{ with secret \"secret/data/workstation/claude-users/%s\" }}{{ .Data.data.setup_token }}{{ end }}"
  error_on_missing_key = true
}
exec {
  command                   = [%s]
  restart_on_secret_changes = "never"
}
`, w.Vault.Addr, w.TokenFile, w.User, quoted)
	p := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		log.Fatal(err)
	}
	return p
}

// Stats are the order statistics of a set of durations.
type Stats struct {
	N                     int
	Median, P90, Min, Max time.Duration
}

// Summarize sorts d and reads its statistics (nearest rank).
func Summarize(d []time.Duration) Stats {
	if len(d) == 0 {
		return Stats{}
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return Stats{N: len(s), Median: s[(len(s)-1)/2], P90: s[(len(s)-1)*9/10], Min: s[0], Max: s[len(s)-1]}
}

// Ms formats a duration in milliseconds.
func Ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
