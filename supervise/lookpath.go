package supervise

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// lookPathIn is exec.LookPath against the PATH in env instead of the supervisor's own: the
// child's PATH is the one that decides what `t3` means. It reports fs.ErrPermission when the
// only candidates exist but are not executable, fs.ErrNotExist otherwise.
func lookPathIn(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		if err := executable(file); err != nil {
			return "", err
		}
		return file, nil
	}
	pathVar, _ := Lookup(env, "PATH")
	sawDenied := false
	for _, dir := range filepath.SplitList(pathVar) {
		if dir == "" || !filepath.IsAbs(dir) {
			// A relative PATH entry would resolve against whatever directory the supervisor
			// happens to run in; exec.LookPath refuses these too (Go issue #43724).
			continue
		}
		p := filepath.Join(dir, file)
		switch err := executable(p); {
		case err == nil:
			return p, nil
		case os.IsPermission(err):
			sawDenied = true
		}
	}
	if sawDenied {
		return "", fmt.Errorf("%q is on PATH but not executable: %w", file, fs.ErrPermission)
	}
	return "", fmt.Errorf("%q not found on PATH %q: %w", file, pathVar, fs.ErrNotExist)
}

func executable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return &fs.PathError{Op: "exec", Path: path, Err: fs.ErrPermission}
	}
	return nil
}

// LookPathSkipping is LookPath that passes over candidates that are the file skip (compared
// with os.SameFile): the agent shim finds the real `claude` behind itself on the same PATH.
func LookPathSkipping(file string, env []string, skip string) (string, error) {
	skipInfo, err := os.Stat(skip)
	if err != nil {
		return "", err
	}
	pathVar, _ := Lookup(env, "PATH")
	for _, dir := range filepath.SplitList(pathVar) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, file)
		if executable(p) != nil {
			continue
		}
		if st, err := os.Stat(p); err == nil && os.SameFile(st, skipInfo) {
			continue
		}
		return p, nil
	}
	return "", fmt.Errorf("%q not found on PATH %q after the shim: %w", file, pathVar, fs.ErrNotExist)
}
