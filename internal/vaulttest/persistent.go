//go:build linux

package vaulttest

import (
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	return StartPersistentBin(t, bin)
}

// StartPersistentBin is StartPersistent with an explicit binary and no tier check, for programs.
func StartPersistentBin(t T, bin string) *Persistent {
	t.Helper()
	dir := t.TempDir()
	port, err := StablePort()
	if err != nil {
		t.Fatalf("%v", err)
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
		t.Fatalf("%v", err)
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
		t.Fatalf("%v", err)
	}
	init, err := c.Sys().Init(&vaultapi.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatalf("vault operator init: %v", err)
	}
	p.unsealKey, p.RootToken = init.KeysB64[0], init.RootToken
	p.unseal(t)
	if p.Client, err = NewClient(p.Addr, p.RootToken); err != nil {
		t.Fatalf("%v", err)
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
func (p *Persistent) launch(t T) {
	t.Helper()
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer logf.Close()
	cmd := exec.Command(p.bin, "server", "-config="+p.config)
	cmd.Dir = p.dir
	cmd.Env = []string{"HOME=" + p.dir, "PATH=/usr/bin:/bin", "VAULT_LOG_LEVEL=warn"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%v", err)
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

func (p *Persistent) unseal(t T) {
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
func (p *Persistent) Restart(t T, unseal bool) {
	t.Helper()
	p.Stop()
	p.launch(t)
	if unseal {
		p.unseal(t)
	}
}

// Launch starts a server that Stop stopped, on the same address and storage, and returns once it
// answers at all: it comes back sealed.
func (p *Persistent) Launch(t T) { p.launch(t) }

// Unseal unseals a server that Restart or Launch left sealed, and waits until it is active.
func (p *Persistent) Unseal(t T) { p.unseal(t) }

// StablePort is a free port of 127.0.0.1 below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range, ip-sysctl.rst), for a server that must get its address back
// after a stop, or that binds it only a while after it was chosen: a port from that range can
// meanwhile be taken by any outgoing connection on the machine, or by anybody's bind to port 0.
func StablePort() (string, error) {
	low := 32768 // the kernel's default lower bound
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	if low <= 11000 {
		return freePort() // an unusual range: no room below it
	}
	for attempt := 0; attempt < 100; attempt++ {
		port := strconv.Itoa(10000 + mathrand.IntN(low-11000))
		if l, err := net.Listen("tcp", "127.0.0.1:"+port); err == nil {
			l.Close()
			return port, nil
		}
	}
	return "", fmt.Errorf("no free port of 127.0.0.1 between 10000 and %d", low-1000)
}
