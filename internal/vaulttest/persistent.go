//go:build linux

package vaulttest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"t3-supervise/internal/testenv"
)

// Persistent is a real (not -dev) server with file storage: its tokens, policies and secrets
// survive Restart, which comes back sealed and is unsealed as an operator would. It is the
// "Vault restarted while the supervisor runs" case, which a dev server (in memory) cannot play.
type Persistent struct {
	*Server
	bin, dir, config, unsealKey string
}

// StartPersistent initializes a server with one unseal key, unseals it and mounts KV v2 at
// secret/, like the dev server.
func StartPersistent(t testing.TB) *Persistent {
	t.Helper()
	bin, missing := Bin()
	testenv.Need(t, testenv.Vault, missing)
	dir := t.TempDir()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + port
	cfg := filepath.Join(dir, "server.hcl")
	err = os.WriteFile(cfg, []byte(fmt.Sprintf(`storage "file" { path = %q }
listener "tcp" {
  address     = %q
  tls_disable = true
}
disable_mlock = true
api_addr      = "http://%s"
`, filepath.Join(dir, "data"), addr, addr)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p := &Persistent{Server: &Server{Addr: "http://" + addr, LogPath: filepath.Join(dir, "vault.log"), t: t}, bin: bin, dir: dir, config: cfg}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("vault server log (%s):\n%s", p.LogPath, tail(p.LogPath, 40))
		}
	})
	p.launch(t)
	c, err := NewClient(p.Addr, "")
	if err != nil {
		t.Fatal(err)
	}
	init, err := c.Sys().Init(&vaultapi.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatalf("vault operator init: %v", err)
	}
	p.unsealKey, p.RootToken = init.KeysB64[0], init.RootToken
	p.unseal(t)
	if p.Client, err = NewClient(p.Addr, p.RootToken); err != nil {
		t.Fatal(err)
	}
	if err := p.Client.Sys().Mount("secret", &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		t.Fatalf("mount secret/: %v", err)
	}
	// KV v2 upgrades its mount in the background; writes fail until it is done.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := p.Client.Logical().Write("secret/data/.probe", map[string]any{"data": map[string]any{"x": "y"}}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("KV v2 at secret/ never became writable")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// launch starts the server process and waits until it answers at all (sealed or not).
func (p *Persistent) launch(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(p.bin, "server", "-config="+p.config)
	cmd.Dir = p.dir
	cmd.Env = []string{"HOME=" + p.dir, "PATH=/usr/bin:/bin", "VAULT_LOG_LEVEL=warn"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd, p.exited, p.stopOnce = cmd, make(chan struct{}), sync.Once{}
	exited := p.exited
	go func() { cmd.Wait(); close(exited) }()
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := hc.Get(p.Addr + "/v1/sys/health"); err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("vault server exited at start:\n%s", tail(p.LogPath, 20))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("vault server on %s does not answer", p.Addr)
		}
	}
}

func (p *Persistent) unseal(t testing.TB) {
	t.Helper()
	c, _ := NewClient(p.Addr, "")
	if _, err := c.Sys().Unseal(p.unsealKey); err != nil {
		t.Fatalf("unseal: %v", err)
	}
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := hc.Get(p.Addr + "/v1/sys/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("vault server not active after unseal")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Restart stops the server and starts it again on the same address and storage; it comes
// back sealed. unseal says whether to unseal it (else the caller sees the sealed state).
func (p *Persistent) Restart(t testing.TB, unseal bool) {
	t.Helper()
	p.Stop()
	p.launch(t)
	if unseal {
		p.unseal(t)
	}
}

// Unseal unseals a server that Restart left sealed.
func (p *Persistent) Unseal(t testing.TB) { p.unseal(t) }
