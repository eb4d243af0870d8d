//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"t3-supervise/internal/atomicfile"
	"t3-supervise/internal/userfile"
)

// The supervisor keeps what `status` cannot see in cgroupfs or /proc in its runtime directory
// (RuntimeDirectory=t3-supervise/%i, the unit user's, removed by systemd on stop), one file per
// concern, each rewritten whole by writeFileAtomic and read back by readRuntimeJSON:
//
//	kills.json       the last kills (cgroup.KillLog, which reads it back too), healthState
//	activity.json    the agents' activity verdict (activityRecord), activityState, every sample
//	credential.json  the token: source, KV version, expiry (credentialState), expiryWatch
//	state.json       probe, pressure kills, Vault failures, version (supervisorState), healthState
//	binary.json      the binary it runs, stale, a pending move (BinaryState), upgrader
//
// Each has one writer in the supervisor, so no file needs a lock; each field lives in one file
// only (the token's source and KV version are credential.json's).

// maxRuntimeFile bounds what `status` reads of any of them: the largest, activity.json, is about
// 150 bytes per agent leaf; kills.json is ten records with trimmed command lines (cgroup.MaxKillLogFile).
const maxRuntimeFile = 1 << 20

// writeAtomic replaces path with data (internal/atomicfile), so that a reader (node_exporter's
// textfile collector, `status`) sees the old file or the new one, never half of one, and a crash
// right after leaves the new one on disk. A failed fsync of the directory is no error here: the
// file is in place, and the next write tries again.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	err := atomicfile.Write(path, data, perm)
	if nd := (*atomicfile.NotDurableError)(nil); errors.As(err, &nd) {
		return nil
	}
	return err
}

// writeFileAtomic replaces path with v as JSON (writeAtomic), so a reader never sees half a file.
func writeFileAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// 0600: the victims' command lines are the user's business (a prompt or a path can be in
	// them); root's fleet tooling reads the files anyway, and so does the user's own `status`.
	return writeAtomic(path, append(b, '\n'), 0o600)
}

// readRuntimeJSON reads the supervisor's file name in its runtime directory dir into v: the one
// reader of those files, for `status`, which may run as root while the directory is the unit's
// user's (uid). It reads through userfile.Read (STYLE.md 14: no symlink, no FIFO, only a regular
// file owned by uid, at most maxRuntimeFile bytes); a missing file is fs.ErrNotExist.
func readRuntimeJSON(dir, name string, uid int, v any) error {
	b, err := userfile.Read(dir, name, uid, maxRuntimeFile)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
	}
	return nil
}
