//go:build linux

// Package userfile reads a file that root may read but a user controls: what sits in a unit's
// runtime directory (RuntimeDirectory=, the unit user's) is that user's choice, and `status`
// runs as root for fleet tooling. It is the one reader of such files, for package main's state
// files and for cgroup's kill log, which may not import each other's helpers (nor creds'
// readPrivateFile: no domain package imports another).
package userfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Read reads dir/name by the rules of every read root makes of a user's place (STYLE.md 14):
// the directory and the file are opened without following a symlink (a link to a root-only file
// must not be printed), the file without blocking (a FIFO would hang the reader for ever,
// fifo(7)); only a regular file (not /dev/zero, which ate 4 GB in 5 s) owned by uid is read,
// fstat of the opened file deciding, and at most max bytes of it, else an error naming the path
// and the rule. A missing file is an error that is fs.ErrNotExist.
func Read(dir, name string, uid int, max int64) ([]byte, error) {
	p := filepath.Join(dir, name)
	const flags = unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|flags, 0)
	if err != nil {
		return nil, openError(dir, err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|flags, 0)
	if err != nil {
		return nil, openError(p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file (mode %#o): refusing to read it", p, st.Mode)
	}
	if int(st.Uid) != uid {
		return nil, fmt.Errorf("%s is owned by uid %d, not the unit's user (uid %d): refusing to read it", p, st.Uid, uid)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes: refusing to read it", p, max)
	}
	return b, nil
}

func openError(p string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%s is a symlink: refusing to follow it", p)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s is not a directory (or a symlink to one): refusing to follow it", p)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	return fmt.Errorf("%s: %w", p, err)
}
