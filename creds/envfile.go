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

	"golang.org/x/sys/unix"
)

// EnvVar is the variable the env file sets, and the one Claude Code reads.
const EnvVar = "CLAUDE_CODE_OAUTH_TOKEN"

// maxEnvFile bounds what is read: the file is one line.
const maxEnvFile = 4096

// ReadEnvFile reads the materialized token: one line CLAUDE_CODE_OAUTH_TOKEN=TOKEN, in the
// format of systemd's EnvironmentFile= and of a shell's `.`. It never follows a symlink at
// path, and refuses a file that group or others can read (the token would already have
// leaked). A missing file is fs.ErrNotExist.
func ReadEnvFile(path string) (Secret, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return Secret{}, fmt.Errorf("env file %s is a symlink: refusing to follow it", path)
		}
		return Secret{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Secret{}, err
	}
	if !st.Mode().IsRegular() {
		return Secret{}, fmt.Errorf("env file %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return Secret{}, fmt.Errorf("env file %s has mode %04o: group or others can read the token (chmod 600, and rotate the token)", path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxEnvFile+1))
	if err != nil {
		return Secret{}, fmt.Errorf("env file %s: %w", path, err)
	}
	if len(b) > maxEnvFile {
		return Secret{}, fmt.Errorf("env file %s is larger than %d bytes", path, maxEnvFile)
	}
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
			return Secret{}, fmt.Errorf("env file %s line %d: want %s=TOKEN", path, n, EnvVar)
		}
		if found {
			return Secret{}, fmt.Errorf("env file %s line %d: %s set twice", path, n, EnvVar)
		}
		tok, found = v, true
	}
	if !found {
		return Secret{}, fmt.Errorf("env file %s has no %s", path, EnvVar)
	}
	if err := ValidateToken(tok); err != nil {
		return Secret{}, fmt.Errorf("env file %s: %w: %v", path, ErrMalformed, err)
	}
	return NewSecret(tok), nil
}

// WriteEnvFile materializes s at path, only when the content changes: a temporary file created
// with mode 0600 (never a wider mode, then a chmod), written, fsynced, renamed over path, and
// the directory fsynced, so a crash at any point leaves either the old or the new complete
// file (rename(2) is atomic). The directory is created 0700, and tightened to 0700 if it
// exists wider. A symlink at path or in place of the directory is refused: the supervisor runs
// as the user and must not be steered into writing the token somewhere else.
func WriteEnvFile(path string, s Secret) (changed bool, err error) {
	if err := ValidateToken(s.Reveal()); err != nil {
		return false, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	dir := filepath.Dir(path)
	if err := ensurePrivateDir(dir); err != nil {
		return false, err
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&fs.ModeSymlink != 0 {
			return false, fmt.Errorf("env file %s is a symlink: refusing to write through it", path)
		}
		if old, err := ReadEnvFile(path); err == nil && old.Equal(s) {
			return false, nil
		}
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // O_EXCL, mode 0600
	if err != nil {
		return false, fmt.Errorf("env file %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.WriteString(EnvVar + "=" + s.Reveal() + "\n"); err != nil {
		return false, fmt.Errorf("env file %s: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return false, fmt.Errorf("env file %s: fsync: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return false, fmt.Errorf("env file %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("env file %s: %w", path, err)
	}
	if err = syncDir(dir); err != nil {
		return true, fmt.Errorf("env file %s: fsync directory: %w", path, err)
	}
	return true, nil
}

// RemoveEnvFile removes the env file after a confirmed opt-out. A symlink is removed itself,
// never its target.
func RemoveEnvFile(path string) (removed bool, err error) {
	err = os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("env file %s: %w", path, err)
	}
	return true, syncDir(filepath.Dir(path))
}

func ensurePrivateDir(dir string) error {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("env file directory %s: %w", dir, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("env file directory %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("env file directory %s is not a directory (a symlink?): refusing to write there", dir)
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
