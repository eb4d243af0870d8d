package creds

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The crash-safety test re-executes the test binary as a writer that rewrites the env file
// in a loop, alternating two tokens, and SIGKILLs it at random moments.
const crashWriterEnv = "CREDS_CRASH_WRITER"

func TestMain(m *testing.M) {
	if os.Getenv(rssProbeEnv) != "" {
		rssProbe()
	}
	if path := os.Getenv(crashWriterEnv); path != "" {
		a, b := NewSecret(os.Getenv("CREDS_TOKEN_A")), NewSecret(os.Getenv("CREDS_TOKEN_B"))
		for i := 0; ; i++ {
			s := a
			if i%2 == 1 {
				s = b
			}
			if _, err := WriteEnvFile(path, s); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	}
	os.Exit(m.Run())
}

// SIGKILL at any point of writing the env file leaves either the old or the new complete file,
// mode 0600; the temporary files a killed writer leaves are 0600 from creation and are swept
// by the next write once stale.
func TestEnvFileSurvivesSIGKILLMidWrite(t *testing.T) {
	iterations := 200
	if testing.Short() {
		iterations = 30
	}
	dir := filepath.Join(t.TempDir(), "claude-auth-sync")
	path := filepath.Join(dir, "claude-oauth.env")
	a, b := testToken, testToken+"B"
	if _, err := WriteEnvFile(path, NewSecret(a)); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	kills, temps := 0, map[string]bool{}
	for i := 0; i < iterations; i++ {
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashWriterEnv+"="+path, "CREDS_TOKEN_A="+a, "CREDS_TOKEN_B="+b)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill at a random moment in the writer's life: some before it wrote anything, most in
		// the middle of its loop of create/write/fsync/rename.
		time.Sleep(time.Duration(rand.IntN(30_000)) * time.Microsecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("iteration %d: the writer did not die of SIGKILL: %v\n%s", i, err, stderr.String())
		}
		kills++
		got, err := ReadEnvFile(path)
		if err != nil {
			t.Fatalf("iteration %d: the env file is unreadable after a SIGKILL: %v", i, err)
		}
		if r := got.Reveal(); r != a && r != b {
			t.Fatalf("iteration %d: the env file holds neither token", i)
		}
		st, _ := os.Stat(path)
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("iteration %d: mode %04o", i, st.Mode().Perm())
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() == filepath.Base(path) {
				continue
			}
			temps[e.Name()] = true
			info, err := e.Info()
			if err != nil && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err == nil && info.Mode().Perm() != 0o600 {
				t.Fatalf("iteration %d: temporary file %s has mode %04o", i, e.Name(), info.Mode().Perm())
			}
		}
	}
	// Leftovers of killed writers: age them past staleTempAge; the next write sweeps them.
	entries, _ := os.ReadDir(dir)
	old := time.Now().Add(-time.Minute)
	for _, e := range entries {
		os.Chtimes(filepath.Join(dir, e.Name()), old, old)
	}
	if _, err := WriteEnvFile(path, NewSecret(testToken+"C")); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files left after a write swept the stale temporaries", len(entries))
	}
	t.Logf("%d SIGKILLs mid-write: the env file was always a complete old or new token, mode 0600; %d leftover temporary files seen, all 0600", kills, len(temps))
}
