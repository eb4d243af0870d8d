package creds

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// EnvVar is the variable the env file sets, and the one Claude Code reads.
const EnvVar = "CLAUDE_CODE_OAUTH_TOKEN"

// maxEnvFile bounds what is read: the file is one line.
const maxEnvFile = 4096

// rename is os.Rename; tests make it fail, to prove no temporary file remains.
var rename = os.Rename

// ReadEnvFile reads the materialized token, written by WriteEnvFile (or by the old
// claude-auth-sync script): one line CLAUDE_CODE_OAUTH_TOKEN=TOKEN, in the syntax both systemd's
// EnvironmentFile= and a shell's `.` read. Blank lines, # comments, and one pair of quotes
// around the value are accepted.
//
// A missing file is an error wrapping fs.ErrNotExist. It never follows a symlink at path
// (O_NOFOLLOW: the supervisor must not be steered into reading and injecting another file), and
// refuses a file that is not regular or that group or others may read (the token would already
// have leaked: rotate it). Errors name the file, never the token.
func ReadEnvFile(path string) (Secret, error) {
	// O_NONBLOCK: a FIFO planted at path must not hang the start.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return Secret{}, fmt.Errorf("env file %s is a symlink: refusing to follow it", path)
		}
		return Secret{}, err // *fs.PathError, names the file
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Secret{}, fmt.Errorf("env file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return Secret{}, fmt.Errorf("env file %s is not a regular file (%s)", path, st.Mode().Type())
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return Secret{}, fmt.Errorf("env file %s has mode %04o: group or others can read the token (remove the file and rotate the token)", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxEnvFile+1))
	if err != nil {
		return Secret{}, fmt.Errorf("env file %s: %w", path, err)
	}
	if len(b) > maxEnvFile {
		return Secret{}, fmt.Errorf("env file %s is larger than %d bytes: not one line", path, maxEnvFile)
	}
	tok, err := parseEnvFile(b)
	if err != nil {
		return Secret{}, fmt.Errorf("env file %s: %w", path, err)
	}
	return tok, nil
}

// parseEnvFile parses the env file's content. Errors never contain the content.
func parseEnvFile(b []byte) (Secret, error) {
	var tok string
	found := false
	s := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k != EnvVar {
			return Secret{}, fmt.Errorf("line %d: want %s=TOKEN", n, EnvVar)
		}
		if found {
			return Secret{}, fmt.Errorf("line %d: %s set twice", n, EnvVar)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		tok, found = v, true
	}
	if !found {
		return Secret{}, fmt.Errorf("no %s line", EnvVar)
	}
	if err := ValidateToken(tok); err != nil {
		return Secret{}, err
	}
	return NewSecret(tok), nil
}

// WriteEnvFile materializes s at path and reports whether it wrote. When the file already holds
// s (and is a valid, private file) nothing is written: mtime and inode stay, so watchers of the
// file see no change.
//
// Otherwise: the directory is created 0700 (and tightened to 0700 when it exists wider); a
// temporary file is created in it with mode 0600 from the start (O_EXCL; never a wider mode then
// a chmod), written, fsynced, renamed over path (rename(2) is atomic), and the directory fsynced,
// so that a crash at any point leaves the old complete file or the new one. On an error the
// temporary file is removed: no partial file remains. A symlink at path or in place of the
// directory is refused: the supervisor must not be steered into writing the token elsewhere.
func WriteEnvFile(path string, s Secret) (changed bool, err error) {
	if err := ValidateToken(s.Reveal()); err != nil {
		return false, fmt.Errorf("env file %s: refusing to write: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := ensurePrivateDir(dir); err != nil {
		return false, err
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&fs.ModeSymlink != 0 {
			return false, fmt.Errorf("env file %s is a symlink: refusing to write through it", path)
		}
		if !st.Mode().IsRegular() {
			return false, fmt.Errorf("env file %s is not a regular file (%s): refusing to replace it", path, st.Mode().Type())
		}
		if old, err := ReadEnvFile(path); err == nil && old.Equal(s) {
			return false, nil
		}
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // O_EXCL, mode 0600
	if err != nil {
		return false, fmt.Errorf("env file %s: %w", path, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.WriteString(EnvVar + "=" + s.Reveal() + "\n"); err != nil {
		return false, fmt.Errorf("env file %s: writing %s: %w", path, tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return false, fmt.Errorf("env file %s: fsync %s: %w", path, tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("env file %s: closing %s: %w", path, tmp.Name(), err)
	}
	if err := rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("env file %s: %w", path, err)
	}
	renamed = true
	removeStaleTemps(dir, filepath.Base(path))
	if err := syncDir(dir); err != nil {
		// The new file is in place; only its durability across a crash is in doubt.
		return true, fmt.Errorf("env file %s: fsync of directory %s: %w", path, dir, err)
	}
	return true, nil
}

// staleTempAge is how old a temporary file must be before a writer takes it for a dead writer's.
const staleTempAge = 10 * time.Second

// removeStaleTemps removes the temporary files a writer killed mid-write left behind (SIGKILL
// skips the deferred removal). They hold a token: mode 0600 from creation, but still litter.
// Only files older than staleTempAge are taken, so a concurrent writer's are left alone.
func removeStaleTemps(dir, base string) {
	matches, _ := filepath.Glob(filepath.Join(dir, "."+base+".tmp-*"))
	for _, m := range matches {
		if st, err := os.Lstat(m); err == nil && st.Mode().IsRegular() && time.Since(st.ModTime()) > staleTempAge {
			os.Remove(m)
		}
	}
}

// RemoveEnvFile removes the env file after a confirmed opt-out, and reports whether there was
// one. A symlink at path is removed itself, never its target; a directory is refused.
func RemoveEnvFile(path string) (removed bool, err error) {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("env file %s: %w", path, err)
	}
	if st.IsDir() {
		return false, fmt.Errorf("env file %s is a directory: refusing to remove it", path)
	}
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("env file %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return true, fmt.Errorf("env file %s: fsync of its directory: %w", path, err)
	}
	return true, nil
}

// ensurePrivateDir makes dir exist as a real directory with mode 0700.
func ensurePrivateDir(dir string) error {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// MkdirAll gives missing parents 0700 too (e.g. ~/.config): never wider.
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("env file directory %s: %w", dir, err)
		}
		st, err = os.Lstat(dir)
	}
	if err != nil {
		return fmt.Errorf("env file directory %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("env file directory %s is not a directory (%s): refusing to write there", dir, st.Mode().Type())
	}
	if st.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("env file directory %s has mode %04o and cannot be made 0700: %w", dir, st.Mode().Perm(), err)
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
