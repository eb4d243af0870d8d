// Package atomicfile replaces a file whole, so that a reader sees the old file or the new one,
// never half of one, and a crash at any point leaves one of the two complete on disk.
//
// The steps (Write): a temporary file in the same directory (rename(2) is atomic only within a
// filesystem), created O_EXCL with mode 0600 (os.CreateTemp: never readable by others, not even
// for a moment), written, chmodded to the file's mode, fsynced, closed, renamed over the path,
// and the directory fsynced: the rename itself is durable only once the directory is (fsync(2):
// "Calling fsync() does not necessarily ensure that the entry in the directory containing the
// file has also reached disk"). On an error before the rename the temporary file is removed.
//
// The file is owned by the user the process runs as, like any file it creates: no chown.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// rename is os.Rename; the tests make it fail, to prove no temporary file remains.
var rename = os.Rename

// NotDurableError is Write's error when everything but the directory's fsync succeeded: the new
// file is in place, and readers see it; only whether it survives a crash is in doubt.
type NotDurableError struct {
	Dir string
	Err error
}

func (e *NotDurableError) Error() string { return "fsync of directory " + e.Dir + ": " + e.Err.Error() }
func (e *NotDurableError) Unwrap() error { return e.Err }

// Write replaces path with data, mode perm (see the package doc). Its errors name the file they
// are about.
func Write(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp.Name(), err)
	}
	if err := rename(tmp.Name(), path); err != nil {
		return err
	}
	renamed = true
	if err := SyncDir(dir); err != nil {
		return &NotDurableError{Dir: dir, Err: err}
	}
	return nil
}

// RemoveStaleTemps removes the temporary files of path that a writer killed mid-write left
// behind (SIGKILL skips the deferred removal), those older than age, so that a concurrent
// writer's are left alone.
func RemoveStaleTemps(path string, age time.Duration) {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), tempPrefix(path)+"*"))
	for _, m := range matches {
		if st, err := os.Lstat(m); err == nil && st.Mode().IsRegular() && time.Since(st.ModTime()) > age {
			os.Remove(m)
		}
	}
}

// tempPrefix names path's temporary files: hidden, and never matching the file itself.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// SyncDir fsyncs a directory, making the creation, rename or removal of an entry in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
