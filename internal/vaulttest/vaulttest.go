//go:build linux

// Package vaulttest runs a real Vault server for tests: `vault server -dev`, in memory, on a free
// port of 127.0.0.1, with KV v2 mounted at secret/ and a random root token. The binary is the
// one test/vault/build makes, named by T3S_VAULT_BIN (test/host/run sets it).
//
// Without a usable binary, Start calls testenv.Need for the "vault" tier: the test is skipped,
// or fails when T3S_REQUIRE asks for that tier, so CI cannot pass by skipping.
//
// Each server runs with a clean environment and a private HOME (no VAULT_* of the caller, no
// ~/.vault-token written), in its own process group, and is killed when the test ends.
package vaulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"t3-supervise/internal/testenv"
)

// EnvBin names the Vault binary.
const EnvBin = "T3S_VAULT_BIN"

// Server is a running dev server.
type Server struct {
	Addr      string        // http://127.0.0.1:PORT
	RootToken string        // the dev server's root token (a random test value)
	Client    *vault.Client // authenticated as root, independent of the caller's VAULT_* variables
	LogPath   string        // the server's output

	t        T
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has been reaped
	stopOnce sync.Once
}

// Bin returns the Vault binary, or "" and why there is none.
func Bin() (bin, missing string) {
	bin = os.Getenv(EnvBin)
	if bin == "" {
		return "", EnvBin + " is not set (test/vault/build prints the path of the binary it builds and caches)"
	}
	st, err := os.Stat(bin)
	if err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return "", fmt.Sprintf("%s=%s is not an executable file", EnvBin, bin)
	}
	return bin, ""
}

// T is what the helpers need of a test: a *testing.T, or the stand-in a benchmark program
// (bench/) provides.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
	Cleanup(func())
	Failed() bool
}

// Start starts a dev server that lives until the test ends, and waits until it answers
// /v1/sys/health as initialized, unsealed and active.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, missing := Bin()
	testenv.Need(t, testenv.Vault, missing)
	return StartBin(t, bin)
}

// StartBin is Start with an explicit binary and no tier check, for programs.
func StartBin(t T, bin string) *Server {
	t.Helper()
	// The port is free when chosen and may be taken before Vault binds it: then Vault exits at
	// once, and another port is tried.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := start(t, bin)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("vaulttest: %v", lastErr)
	return nil
}

func start(t T, bin string) (*Server, error) {
	dir := t.TempDir()
	root := "root-" + randHex(16)
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + port
	logPath := filepath.Join(dir, "vault.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "server", "-dev", "-dev-no-store-token",
		"-dev-listen-address="+addr, "-dev-root-token-id="+root)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin", "VAULT_LOG_LEVEL=warn", "VAULT_DISABLE_MLOCK=true"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	s := &Server{Addr: "http://" + addr, RootToken: root, LogPath: logPath, t: t, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("vault dev server log (%s):\n%s", logPath, tail(logPath, 40))
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for {
		resp, err := hc.Get(s.Addr + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("vault dev server on %s exited at start:\n%s", addr, tail(logPath, 20))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("vault dev server on %s not healthy after 30s (last: %v):\n%s", addr, err, tail(logPath, 20))
		}
	}
	s.Client, err = NewClient(s.Addr, root)
	if err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// NewClient is a Vault client for addr with token, that ignores the VAULT_* variables of the
// test process (a test may set VAULT_TOKEN or VAULT_NAMESPACE for the code under test).
func NewClient(addr, token string) (*vault.Client, error) {
	c, err := vault.NewClient(&vault.Config{Address: addr, HttpClient: &http.Client{Timeout: 10 * time.Second}, MaxRetries: 0})
	if err != nil {
		return nil, fmt.Errorf("vault client for %s: %w", addr, err)
	}
	c.ClearNamespace()
	c.SetToken(token)
	return c, nil
}

// Stop kills the server and waits for it (idempotent): the "Vault went away" case.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	})
}

// Seal seals the server (`vault operator seal`): every request then answers 503.
func (s *Server) Seal() {
	s.t.Helper()
	if err := s.Client.Sys().Seal(); err != nil {
		s.t.Fatalf("vault operator seal: %v", err)
	}
}

// Put writes data as a new version of the KV v2 secret secret/PATH.
func (s *Server) Put(path string, data map[string]any) {
	s.t.Helper()
	if _, err := s.Client.KVv2("secret").Put(context.Background(), path, data); err != nil {
		s.t.Fatalf("vault kv put secret/%s: %v", path, err)
	}
}

// Policy creates policy name allowing reads of the KV v2 secrets secret/PATH for each of paths
// (as the production policy workstation-claude-USER does for one path).
func (s *Server) Policy(name string, paths ...string) {
	s.t.Helper()
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "path %q { capabilities = [\"read\"] }\n", "secret/data/"+p)
	}
	if err := s.Client.Sys().PutPolicy(name, b.String()); err != nil {
		s.t.Fatalf("vault policy write %s: %v", name, err)
	}
}

// Token creates a token with policies (plus default); period > 0 makes it periodic (renewable,
// dies after period unless renewed), like the production per-user token.
func (s *Server) Token(period time.Duration, policies ...string) string {
	s.t.Helper()
	req := &vault.TokenCreateRequest{Policies: policies}
	if period > 0 {
		req.Period = period.String()
	}
	sec, err := s.Client.Auth().Token().Create(req)
	if err != nil {
		s.t.Fatalf("vault token create: %v", err)
	}
	return sec.Auth.ClientToken
}

// AppRole enables AppRole (once) and creates role name issuing tokens with policies and a TTL of
// one hour; it returns the role id and a new secret id.
func (s *Server) AppRole(name string, policies ...string) (roleID, secretID string) {
	s.t.Helper()
	return s.AppRoleWith(name, map[string]any{"token_ttl": "1h"}, policies...)
}

// AppRoleWith is AppRole with more role parameters (e.g. token_ttl, token_max_ttl, token_type).
func (s *Server) AppRoleWith(name string, params map[string]any, policies ...string) (roleID, secretID string) {
	s.t.Helper()
	auths, err := s.Client.Sys().ListAuth()
	if err != nil {
		s.t.Fatalf("vault auth list: %v", err)
	}
	if _, ok := auths["approle/"]; !ok {
		if err := s.Client.Sys().EnableAuthWithOptions("approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
			s.t.Fatalf("vault auth enable approle: %v", err)
		}
	}
	body := map[string]any{"token_policies": strings.Join(policies, ",")}
	for k, v := range params {
		body[k] = v
	}
	if _, err := s.Client.Logical().Write("auth/approle/role/"+name, body); err != nil {
		s.t.Fatalf("approle role %s: %v", name, err)
	}
	r, err := s.Client.Logical().Read("auth/approle/role/" + name + "/role-id")
	if err != nil || r == nil {
		s.t.Fatalf("approle role %s role-id: %v", name, err)
	}
	sec, err := s.Client.Logical().Write("auth/approle/role/"+name+"/secret-id", nil)
	if err != nil || sec == nil {
		s.t.Fatalf("approle role %s secret-id: %v", name, err)
	}
	return r.Data["role_id"].(string), sec.Data["secret_id"].(string)
}

// FakeToken returns a random, well-formed, fake setup token: the prefix and 86 base64url
// characters, like `claude setup-token` output but never a real credential.
func FakeToken() string {
	b := make([]byte, 64)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "sk-ant-oat01-" + base64.RawURLEncoding.EncodeToString(b)
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// Bin is the server's binary; it also runs `vault agent`.
func (s *Server) Bin() string { return s.cmd.Path }

// MoveMount moves the secrets engine at from to to (`vault secrets move`), and waits until the
// move is done.
func (s *Server) MoveMount(from, to string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client.Sys().RemountWithContext(ctx, from, to); err != nil {
		s.t.Fatalf("vault secrets move %s %s: %v", from, to, err)
	}
}

// DisableMount disables the secrets engine at path (`vault secrets disable`): its data is gone.
func (s *Server) DisableMount(path string) {
	s.t.Helper()
	if err := s.Client.Sys().Unmount(path); err != nil {
		s.t.Fatalf("vault secrets disable %s: %v", path, err)
	}
}
