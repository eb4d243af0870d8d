package creds

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The Vault token file and the AppRole secret id file are read by the env file's rules: a FIFO
// there must not hang the start (it did, forever, deaf to --vault-timeout and SIGTERM), a symlink
// is not followed (to another user's token, or to /dev/zero), only a bounded regular file is read.
func TestCredentialFilesAreReadSafely(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("hvs.a-good-token\n"), 0o600)
	bad := map[string]func(p string) error{
		"fifo":               func(p string) error { return syscall.Mkfifo(p, 0o600) },
		"symlink":            func(p string) error { return os.Symlink(good, p) },
		"symlink to a fifo":  func(p string) error { syscall.Mkfifo(p+".fifo", 0o600); return os.Symlink(p+".fifo", p) },
		"symlink /dev/zero":  func(p string) error { return os.Symlink("/dev/zero", p) },
		"dangling symlink":   func(p string) error { return os.Symlink(filepath.Join(dir, "nothing"), p) },
		"directory":          func(p string) error { return os.Mkdir(p, 0o700) },
		"larger than 16 KiB": func(p string) error { return os.WriteFile(p, []byte(strings.Repeat("h", 20<<10)), 0o600) },
	}
	want := map[string]string{
		"fifo": "not a regular file (a FIFO)", "symlink": "symlink", "symlink to a fifo": "symlink",
		"symlink /dev/zero": "symlink", "dangling symlink": "symlink", "directory": "not a regular file (a directory)",
		"larger than 16 KiB": "larger than",
	}
	for name, mk := range bad {
		for _, kind := range []string{"token file", "token file at the default location", "AppRole secret id file"} {
			t.Run(kind+"/"+name, func(t *testing.T) {
				f := newFakeVault(t)
				p := filepath.Join(t.TempDir(), "cred")
				if err := mk(p); err != nil {
					t.Fatal(err)
				}
				cfg := f.config(t)
				switch kind {
				case "token file":
					cfg.TokenFile, cfg.TokenFileExplicit = p, true
				case "token file at the default location":
					// Not "nothing there": a symlink or FIFO at the default location is refused,
					// not skipped for VAULT_TOKEN.
					cfg.TokenFile = p
				default:
					cfg.Getenv = env{"VAULT_ADDR": f.URL}.get
					cfg.AppRoleRoleID, cfg.AppRoleSecretIDFile = "role", p
				}
				cfg.Timeout = 30 * time.Second
				start := time.Now()
				done := make(chan error, 1)
				go func() { _, _, err := resolveWith(cfg); done <- err }()
				var err error
				select {
				case err = <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("hangs")
				}
				if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), want[name]) {
					t.Errorf("err %v, want ErrConfig naming %s and %q", err, p, want[name])
				}
				if strings.Contains(err.Error(), "hvs.a-good") {
					t.Error("the error carries the file's content")
				}
				if n := f.total(); n != 0 {
					t.Errorf("%d requests to Vault with a refused credential file", n)
				}
				t.Logf("%v after %v", err, time.Since(start).Round(time.Millisecond))
			})
		}
	}
}

// A read that does not come back in time (a hung file system; withContext gives up on it) is
// ErrUnavailable, transient, so that the fallback covers it; any other failure is the operator's.
func TestCredentialFileErrorClass(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-ctx.Done()
	late := fmt.Errorf("Vault token file /x: not read before the start was called off or timed out: %w", ctx.Err())
	if err := fileError(ctx, late); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "/x") {
		t.Errorf("timed out: %v", err)
	}
	if err := fileError(ctx, errors.New("Vault token file /x is a symlink")); !errors.Is(err, ErrConfig) {
		t.Errorf("refused: %v", err)
	}
}
