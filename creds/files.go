package creds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// readPrivateFile reads a small file the supervisor holds a secret in (the env file, the Vault
// token file, the AppRole secret id file), by the same rules for every one of them, because the
// user (or whoever can write the directory) decides what sits at the path:
//
//   - no symlink is followed at path (O_NOFOLLOW): a link to another user's token, or to a file
//     only root may read, is refused rather than read;
//   - the open never blocks (O_NONBLOCK): a FIFO planted at path would otherwise hang the open
//     until somebody writes to it (fifo(7)), deaf to every timeout;
//   - only a regular file is read (fstat of the opened file, not of the path, so nothing can be
//     swapped in between): not a FIFO, a device (/dev/zero), a socket or a directory;
//   - at most max bytes are read; a larger file is an error, never truncated.
//
// what names the file in errors ("Vault token file"); errors name the path and never the
// content. check, if not nil, judges the opened file's metadata (the env file's mode).
func readPrivateFile(path, what string, max int64, check func(fs.FileInfo) error) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%s %s is a symlink: refusing to follow it", what, path)
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // errors.Is(err, fs.ErrNotExist) still holds
		}
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s is not a regular file (%s): refusing to read it", what, path, fileType(st.Mode()))
	}
	if check != nil {
		if err := check(st); err != nil {
			return nil, err
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s %s is larger than %d bytes: not one token", what, path, max)
	}
	return b, nil
}

// fileType names a file type for an error message.
func fileType(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	}
	return m.Type().String()
}

// withContext runs read and returns its result, or ctx's error as soon as ctx ends. A read of a
// regular file does not block on a FIFO (readPrivateFile opens non-blocking), but it can on a
// hung network file system (an NFS home that lost its server blocks open(2) and read(2),
// uninterruptibly): the start must still end at --vault-timeout or a SIGTERM. The abandoned
// read finishes (and closes its file) whenever the file system answers.
func withContext[T any](ctx context.Context, read func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := read()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}
