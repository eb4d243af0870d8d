package creds

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestEnvFileRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".config", "claude-auth-sync")
	path := filepath.Join(dir, "claude-oauth.env")
	if _, err := ReadEnvFile(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	changed, err := WriteEnvFile(path, NewSecret(testToken))
	if err != nil || !changed {
		t.Fatalf("write: %v %v", changed, err)
	}
	st, _ := os.Stat(path)
	dst, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o600 || dst.Mode().Perm() != 0o700 {
		t.Errorf("modes file %04o dir %04o", st.Mode().Perm(), dst.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if string(b) != EnvVar+"="+testToken+"\n" {
		t.Errorf("content %q", b)
	}
	got, err := ReadEnvFile(path)
	if err != nil || !got.Equal(NewSecret(testToken)) {
		t.Fatalf("read back: %v", err)
	}
	// Unchanged content: no write at all (mtime and inode stay).
	old := time.Now().Add(-time.Hour)
	os.Chtimes(path, old, old)
	ino := inode(t, path)
	changed, err = WriteEnvFile(path, NewSecret(testToken))
	if err != nil || changed {
		t.Fatalf("rewrite of the same token: %v %v", changed, err)
	}
	if st, _ := os.Stat(path); !st.ModTime().Equal(old) || inode(t, path) != ino {
		t.Error("an unchanged token was rewritten")
	}
	// A new token replaces the file atomically (a new inode: rename, not truncate).
	if changed, err = WriteEnvFile(path, NewSecret(testToken+"X")); err != nil || !changed {
		t.Fatalf("rotate: %v %v", changed, err)
	}
	if inode(t, path) == ino {
		t.Error("rotation rewrote the file in place")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	removed, err := RemoveEnvFile(path)
	if err != nil || !removed {
		t.Fatalf("remove: %v %v", removed, err)
	}
	if removed, err = RemoveEnvFile(path); err != nil || removed {
		t.Errorf("second remove: %v %v", removed, err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// A directory that exists is never chmodded (it may be $HOME): a safe one is used as it is, one
// that group or others may write is refused with the fix. Missing directories are created 0700,
// and PlanWrite, which the dry run prints, lists exactly those.
func TestEnvFileDirectories(t *testing.T) {
	base := t.TempDir()
	home := filepath.Join(base, "home")
	os.Mkdir(home, 0o751)
	os.Chmod(home, 0o751)
	// The env file right in $HOME: HOME keeps its mode.
	if _, err := WriteEnvFile(filepath.Join(home, "claude-oauth.env"), NewSecret(testToken)); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(home); st.Mode().Perm() != 0o751 {
		t.Errorf("$HOME's mode changed to %04o", st.Mode().Perm())
	}
	// A missing chain: each created 0700, as planned.
	path := filepath.Join(home, ".config", "claude-auth-sync", "claude-oauth.env")
	plan, err := PlanWrite(path)
	want := []string{filepath.Join(home, ".config"), filepath.Join(home, ".config", "claude-auth-sync")}
	if err != nil || strings.Join(plan.Mkdir, " ") != strings.Join(want, " ") {
		t.Fatalf("plan %v %v, want mkdir %v", plan, err, want)
	}
	if fp := PlanEnvFile(path, ActionWrite); fp.Action != ActionWrite || len(fp.Mkdir) != 2 || fp.Refusal != nil {
		t.Errorf("file plan %+v", fp)
	}
	if _, err := WriteEnvFile(path, NewSecret(testToken)); err != nil {
		t.Fatal(err)
	}
	for _, d := range want {
		if st, _ := os.Stat(d); st.Mode().Perm() != 0o700 {
			t.Errorf("%s created %04o", d, st.Mode().Perm())
		}
	}
	if plan, err := PlanWrite(path); err != nil || len(plan.Mkdir) != 0 {
		t.Errorf("plan once the directories exist: %v %v", plan, err)
	}
	// An existing 0755 directory (the old sync script's, say) stays 0755.
	cas := filepath.Join(home, ".config", "claude-auth-sync")
	os.Chmod(cas, 0o755)
	if _, err := WriteEnvFile(path, NewSecret(testToken+"2")); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(cas); st.Mode().Perm() != 0o755 {
		t.Errorf("an existing directory was chmodded to %04o", st.Mode().Perm())
	}
	// Writable by group or others: refused, nothing written, mode untouched.
	for _, mode := range []os.FileMode{0o775, 0o777, os.ModeSticky | 0o777, 0o730} {
		os.Chmod(cas, mode)
		before, _ := os.ReadFile(path)
		_, err := WriteEnvFile(path, NewSecret(testToken))
		if err == nil || !strings.Contains(err.Error(), "group or others could replace") || !strings.Contains(err.Error(), "chmod go-w "+cas) {
			t.Errorf("mode %04o: %v", mode, err)
		}
		if fp := PlanEnvFile(path, ActionWrite); fp.Action != ActionRefuse || fp.Refusal == nil || fp.Refusal.Error() != err.Error() {
			t.Errorf("mode %04o: the plan does not say what the write does: %+v", mode, fp)
		}
		if after, _ := os.ReadFile(path); string(after) != string(before) {
			t.Errorf("mode %04o: written anyway", mode)
		}
		if st, _ := os.Stat(cas); st.Mode()&(os.ModePerm|os.ModeSticky) != mode {
			t.Errorf("mode %04o changed to %v", mode, st.Mode())
		}
	}
	os.Chmod(cas, 0o700)
	// Owned by somebody else (only root can make one).
	if os.Geteuid() == 0 {
		other := filepath.Join(base, "other")
		os.Mkdir(other, 0o700)
		os.Chown(other, 65534, 65534)
		if _, err := WriteEnvFile(filepath.Join(other, "x.env"), NewSecret(testToken)); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("another user's directory: %v", err)
		}
	}
	// A file in the way of a directory to create.
	os.WriteFile(filepath.Join(base, "plain"), nil, 0o600)
	if _, err := PlanWrite(filepath.Join(base, "plain", "sub", "x.env")); err == nil || !strings.Contains(err.Error(), "cannot be created") {
		t.Errorf("a file where a directory goes: %v", err)
	}
}

func TestEnvFileRefusesSymlinks(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "cas")
	os.Mkdir(dir, 0o700)
	target := filepath.Join(base, "elsewhere")
	os.WriteFile(target, []byte("precious\n"), 0o600)
	path := filepath.Join(dir, "claude-oauth.env")
	os.Symlink(target, path)
	if _, err := WriteEnvFile(path, NewSecret(testToken)); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("wrote through a symlink: %v", err)
	}
	if _, err := ReadEnvFile(path); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("read through a symlink: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Errorf("the target changed: %q", b)
	}
	// The dry run says so, the reason included.
	if fp := PlanEnvFile(path, ActionWrite); fp.Action != ActionRefuse || !strings.Contains(fp.Refusal.Error(), "symlink") {
		t.Errorf("plan for a symlink: %+v", fp)
	}
	// Removing takes the link, never its target.
	if fp := PlanEnvFile(path, ActionRemove); fp.Action != ActionRemove {
		t.Errorf("plan to remove a symlink: %+v", fp)
	}
	// A symlinked directory is refused too.
	linkDir := filepath.Join(base, "linkdir")
	os.Symlink(dir, linkDir)
	if _, err := WriteEnvFile(filepath.Join(linkDir, "x.env"), NewSecret(testToken)); err == nil {
		t.Error("wrote into a symlinked directory")
	}
	if fp := PlanEnvFile(filepath.Join(linkDir, "x.env"), ActionWrite); fp.Action != ActionRefuse {
		t.Errorf("plan for a symlinked directory: %+v", fp)
	}
}

func TestReadEnvFileRejects(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"world readable":  {EnvVar + "=" + testToken + "\n", 0o644, "mode 0644"},
		"garbage":         {"hello\n", 0o600, "want " + EnvVar},
		"other variable":  {"FOO=bar\n", 0o600, "want " + EnvVar},
		"twice":           {EnvVar + "=" + testToken + "\n" + EnvVar + "=" + testToken + "\n", 0o600, "twice"},
		"empty":           {"", 0o600, "no " + EnvVar},
		"malformed token": {EnvVar + "=sk-ant-oat01-short\n", 0o600, "malformed"},
		"shell injection": {EnvVar + "=" + testToken + "$(id)\n", 0o600, "malformed"},
		"too big":         {strings.Repeat("#", 5000), 0o600, "larger"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(p, []byte(tc.content), tc.mode)
		os.Chmod(p, tc.mode)
		_, err := ReadEnvFile(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v (want %q and the path)", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), testToken) {
			t.Errorf("%s: the error contains the token", name)
		}
	}
	// Comments and blank lines are fine.
	p := filepath.Join(dir, "commented")
	os.WriteFile(p, []byte("# materialized by t3-supervise\n\n"+EnvVar+"="+testToken+"\n"), 0o600)
	if _, err := ReadEnvFile(p); err != nil {
		t.Errorf("commented file: %v", err)
	}
}

func TestWriteEnvFileRefusesAMalformedToken(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.env")
	if _, err := WriteEnvFile(p, NewSecret(testToken+"\nEVIL=1")); !errors.Is(err, ErrMalformed) {
		t.Errorf("err %v", err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Error("a file was written")
	}
}

func TestReadEnvFileAcceptsQuotesAndRefusesOddFiles(t *testing.T) {
	dir := t.TempDir()
	for _, content := range []string{
		EnvVar + "=\"" + testToken + "\"\n",
		EnvVar + "='" + testToken + "'\n",
		"  " + EnvVar + "=" + testToken, // no final newline
	} {
		p := filepath.Join(dir, "q")
		os.WriteFile(p, []byte(content), 0o600)
		if got, err := ReadEnvFile(p); err != nil || !got.Equal(NewSecret(testToken)) {
			t.Errorf("%q: %v", strings.ReplaceAll(content, testToken, "TOKEN"), err)
		}
	}
	p := filepath.Join(dir, "unbalanced")
	os.WriteFile(p, []byte(EnvVar+"=\""+testToken+"\n"), 0o600)
	if _, err := ReadEnvFile(p); !errors.Is(err, ErrMalformed) {
		t.Errorf("unbalanced quote: %v", err)
	}
	// A FIFO must not hang the start; a directory is not a file.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := ReadEnvFile(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("fifo: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadEnvFile hangs on a FIFO")
	}
	if _, err := WriteEnvFile(fifo, NewSecret(testToken)); err == nil {
		t.Error("replaced a FIFO")
	}
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	if _, err := ReadEnvFile(sub); err == nil {
		t.Error("read a directory")
	}
	if _, err := RemoveEnvFile(sub); err == nil {
		t.Error("removed a directory")
	}
	if fp := PlanEnvFile(fifo, ActionWrite); fp.Action != ActionRefuse || !strings.Contains(fp.Refusal.Error(), "a FIFO") {
		t.Errorf("plan for a FIFO: %+v", fp)
	}
	if fp := PlanEnvFile(sub, ActionRemove); fp.Action != ActionRefuse {
		t.Errorf("plan to remove a directory: %+v", fp)
	}
}

// A reader (start-claude.sh, another supervisor start) never sees a partial file while the
// token rotates.
func TestEnvFileRotationIsAtomicForReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cas", "claude-oauth.env")
	a, b := NewSecret(testToken), NewSecret(testToken+"Y")
	if _, err := WriteEnvFile(path, a); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	errs := make(chan error, 1)
	reads := 0
	go func() {
		defer close(errs)
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := ReadEnvFile(path)
			if err != nil || !(got.Equal(a) || got.Equal(b)) {
				errs <- fmt.Errorf("a reader saw %v, %v", got, err)
				return
			}
			reads++
		}
	}()
	for i := 0; i < 200; i++ {
		next := a
		if i%2 == 0 {
			next = b
		}
		if changed, err := WriteEnvFile(path, next); err != nil || !changed {
			t.Fatal(changed, err)
		}
	}
	close(stop)
	if err := <-errs; err != nil {
		t.Error(err)
	}
	t.Logf("%d reads during 200 rotations", reads)
}

// Whatever bytes are in the env file, ReadEnvFile either refuses them or returns a valid token.
func FuzzReadEnvFile(f *testing.F) {
	f.Add([]byte(EnvVar + "=" + testToken + "\n"))
	f.Add([]byte("# c\n" + EnvVar + "=\"" + testToken + "\"\n"))
	f.Add([]byte(EnvVar + "=" + testToken + "\nEVIL=1\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "claude-oauth.env")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Skip()
		}
		s, err := ReadEnvFile(p)
		if err == nil && ValidateToken(s.Reveal()) != nil {
			t.Fatalf("ReadEnvFile accepted an invalid token from %q", b)
		}
	})
}
