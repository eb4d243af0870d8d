package creds

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"t3-supervise/internal/atomicfile"
)

// EnvVar is the variable the env file sets, and the one Claude Code reads.
const EnvVar = "CLAUDE_CODE_OAUTH_TOKEN"

// maxEnvFile bounds what is read: the file is one line.
const maxEnvFile = 4096

// ReadEnvFile reads the materialized token, written by WriteEnvFile (or by the old
// claude-auth-sync script): one line CLAUDE_CODE_OAUTH_TOKEN=TOKEN, in the syntax both systemd's
// EnvironmentFile= and a shell's `.` read. Blank lines, # comments, and one pair of quotes
// around the value are accepted.
//
// A missing file is an error wrapping fs.ErrNotExist. It reads by readPrivateFile's rules (no
// symlink followed: the supervisor must not be steered into reading and injecting another file;
// no FIFO; a regular file; bounded), and refuses a file that group or others may read (the token
// would already have leaked: rotate it). Errors name the file, never the token.
func ReadEnvFile(path string) (Secret, error) {
	b, err := readPrivateFile(path, "env file", maxEnvFile, func(st fs.FileInfo) error {
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			return fmt.Errorf("env file %s has mode %04o: group or others can read the token (remove the file and rotate the token)", path, perm)
		}
		return nil
	})
	if err != nil {
		return Secret{}, err
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
// Otherwise it does what PlanWrite says (the dry run prints that): missing directories are
// created 0700; then, through internal/atomicfile, a temporary file is created in the directory with mode 0600 from the start
// (O_EXCL; never a wider mode then a chmod), written, fsynced, renamed over path (rename(2) is
// atomic), and the directory fsynced, so that a crash at any point leaves the old complete file
// or the new one. On an error the temporary file is removed: no partial file remains. What
// PlanWrite refuses (a symlink at path or in place of the directory, a FIFO, a directory others
// can write) is refused: the supervisor must not be steered into writing the token elsewhere.
func WriteEnvFile(path string, s Secret) (changed bool, err error) {
	if err := ValidateToken(s.Reveal()); err != nil {
		return false, fmt.Errorf("env file %s: refusing to write: %w", path, err)
	}
	plan, err := PlanWrite(path)
	if err != nil {
		return false, err
	}
	for _, d := range plan.Mkdir {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return false, fmt.Errorf("env file directory %s: %w", d, err)
		}
	}
	if old, err := ReadEnvFile(path); err == nil && old.Equal(s) {
		return false, nil
	}
	err = atomicfile.Write(path, []byte(EnvVar+"="+s.Reveal()+"\n"), 0o600)
	var nd *atomicfile.NotDurableError
	if err != nil && !errors.As(err, &nd) {
		return false, fmt.Errorf("env file %s: %w", path, err)
	}
	atomicfile.RemoveStaleTemps(path, staleTempAge)
	if err != nil {
		// The new file is in place; only its durability across a crash is in doubt.
		return true, fmt.Errorf("env file %s: %w", path, err)
	}
	return true, nil
}

// staleTempAge is how old a temporary file must be before a writer takes it for a dead writer's:
// they hold a token (mode 0600 from creation), but still litter.
const staleTempAge = 10 * time.Second

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
		return false, errRemoveDir(path)
	}
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("env file %s: %w", path, err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return true, fmt.Errorf("env file %s: fsync of its directory: %w", path, err)
	}
	return true, nil
}

// WritePlan is what WriteEnvFile does at a path before it writes the file.
type WritePlan struct {
	Mkdir []string // directories it creates, mode 0700, outermost first
}

// PlanWrite says what WriteEnvFile would do at path, and changes nothing; its error is the
// refusal WriteEnvFile would return.
//
// A missing directory (and its missing parents) is created 0700. A directory that exists is
// never chmodded: it may be $HOME, or ~/.config, whose modes are the user's business, and the
// file itself is 0600 in any case. It must be a real directory (not a symlink to one) owned by
// the user this runs as, that neither group nor others may write: whoever can write it can
// replace the token file, or plant a symlink for the next write. Such a directory is refused
// with the change to make, rather than tightened behind the operator's back. A symlink or any
// other non-regular file at path is refused.
func PlanWrite(path string) (WritePlan, error) {
	var plan WritePlan
	dir := filepath.Dir(path)
	st, err := os.Lstat(dir)
	switch {
	case missing(err):
		// Walk up to the nearest existing ancestor; everything below it is created. Ancestors
		// are the user's own layout (~/.config may well be a symlink into a dotfiles checkout):
		// they are followed.
		for d := dir; ; d = filepath.Dir(d) {
			ast, err := os.Stat(d)
			if err == nil {
				if !ast.IsDir() {
					return WritePlan{}, fmt.Errorf("env file directory %s cannot be created: %s is %s", dir, d, fileType(ast.Mode()))
				}
				break
			}
			if !missing(err) || d == filepath.Dir(d) {
				return WritePlan{}, fmt.Errorf("env file directory %s: %w", dir, err)
			}
			plan.Mkdir = append([]string{d}, plan.Mkdir...)
		}
		return plan, nil
	case err != nil:
		return WritePlan{}, fmt.Errorf("env file directory %s: %w", dir, err)
	}
	if !st.IsDir() {
		return WritePlan{}, fmt.Errorf("env file directory %s is %s, not a directory: refusing to write there", dir, fileType(st.Mode()))
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; int(uid) != os.Geteuid() {
		return WritePlan{}, fmt.Errorf("env file directory %s is owned by uid %d, not by uid %d that this runs as: refusing to write there", dir, uid, os.Geteuid())
	}
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		return WritePlan{}, fmt.Errorf("env file directory %s has mode %04o: group or others could replace the token file; refusing to write there (chmod go-w %s)", dir, perm, dir)
	}
	fst, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return WritePlan{}, fmt.Errorf("env file %s: %w", path, err)
	case fst.Mode()&fs.ModeSymlink != 0:
		return WritePlan{}, fmt.Errorf("env file %s is a symlink: refusing to write through it", path)
	case !fst.Mode().IsRegular():
		return WritePlan{}, fmt.Errorf("env file %s is %s, not a regular file: refusing to replace it", path, fileType(fst.Mode()))
	}
	return plan, nil
}

// missing: no such file, or a path through a file that is not a directory (ENOTDIR).
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func errRemoveDir(path string) error {
	return fmt.Errorf("env file %s is a directory: refusing to remove it", path)
}
