// Package vaulttest runs a real Vault dev server for tests: the binary test/vault/build makes,
// named by T3S_VAULT_BIN, on a free port of 127.0.0.1, in-memory, with KV v2 at secret/.
package vaulttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"t3-supervise/internal/testenv"
)

// Server is a running dev server.
type Server struct {
	Addr      string // http://127.0.0.1:PORT
	RootToken string
	Client    *vault.Client // authenticated as root
	cmd       *exec.Cmd
	t         testing.TB
}

// Bin returns the Vault binary, or why there is none.
func Bin() (string, string) {
	bin := os.Getenv("T3S_VAULT_BIN")
	if bin == "" {
		return "", "T3S_VAULT_BIN is not set (make test-host sets it; test/vault/build makes the binary)"
	}
	if st, err := os.Stat(bin); err != nil || st.Mode()&0o111 == 0 {
		return "", fmt.Sprintf("T3S_VAULT_BIN=%s is not an executable", bin)
	}
	return bin, ""
}

// Start starts a dev server that lives until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, missing := Bin()
	testenv.Need(t, testenv.Vault, missing)
	root := randHex(12)
	port := freePort(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "server", "-dev", "-dev-no-store-token",
		"-dev-listen-address=127.0.0.1:"+port, "-dev-root-token-id="+root)
	// A clean environment: no VAULT_* of the caller, a private HOME for the token helper.
	cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin", "VAULT_LOG_LEVEL=warn"}
	logf, err := os.Create(filepath.Join(dir, "vault.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: "http://127.0.0.1:" + port, RootToken: root, cmd: cmd, t: t}
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.Addr + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("vault dev server did not become healthy: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cfg := vault.DefaultConfig()
	cfg.Address = s.Addr
	s.Client, err = vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Client.SetToken(root)
	return s
}

// Stop kills the server (idempotent).
func (s *Server) Stop() {
	if s.cmd.Process != nil && s.cmd.ProcessState == nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		s.cmd.Wait()
	}
}

// Put writes data to the KV v2 path secret/PATH.
func (s *Server) Put(path string, data map[string]any) {
	s.t.Helper()
	if _, err := s.Client.KVv2("secret").Put(context.Background(), path, data); err != nil {
		s.t.Fatalf("kv put secret/%s: %v", path, err)
	}
}

// Policy creates policy name allowing reads of the KV v2 paths given (without "secret/data/").
func (s *Server) Policy(name string, paths ...string) {
	s.t.Helper()
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "path \"secret/data/%s\" { capabilities = [\"read\"] }\n", p)
	}
	if err := s.Client.Sys().PutPolicy(name, b.String()); err != nil {
		s.t.Fatalf("policy %s: %v", name, err)
	}
}

// Token creates a token with policies (and the default policy); period > 0 makes it periodic.
func (s *Server) Token(period time.Duration, policies ...string) string {
	s.t.Helper()
	req := &vault.TokenCreateRequest{Policies: policies}
	if period > 0 {
		req.Period = period.String()
	}
	sec, err := s.Client.Auth().Token().Create(req)
	if err != nil {
		s.t.Fatalf("token create: %v", err)
	}
	return sec.Auth.ClientToken
}

// AppRole enables AppRole (once) and creates role name with policies; it returns the role id
// and a secret id.
func (s *Server) AppRole(name string, policies ...string) (roleID, secretID string) {
	s.t.Helper()
	auths, _ := s.Client.Sys().ListAuth()
	if _, ok := auths["approle/"]; !ok {
		if err := s.Client.Sys().EnableAuthWithOptions("approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
			s.t.Fatalf("enable approle: %v", err)
		}
	}
	if _, err := s.Client.Logical().Write("auth/approle/role/"+name, map[string]any{
		"token_policies": strings.Join(policies, ","), "token_ttl": "1h",
	}); err != nil {
		s.t.Fatalf("approle role %s: %v", name, err)
	}
	r, err := s.Client.Logical().Read("auth/approle/role/" + name + "/role-id")
	if err != nil {
		s.t.Fatal(err)
	}
	sec, err := s.Client.Logical().Write("auth/approle/role/"+name+"/secret-id", nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return r.Data["role_id"].(string), sec.Data["secret_id"].(string)
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// FakeToken returns a random, well-formed, fake setup token for tests.
func FakeToken() string { return "sk-ant-oat01-" + randHex(24) + "_TEST-ONLY" }
