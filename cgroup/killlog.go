//go:build linux

package cgroup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"t3-supervise/internal/userfile"
)

// The kill log is the last kills of one unit, kept by its supervisor in its runtime directory
// for `t3-supervise status`, which may run as root while the directory is the unit user's. One
// type writes it and reads it back, so the format and its bounds live in one place.

// KillLogFile is the kill log's name in the runtime directory.
const KillLogFile = "kills.json"

const (
	// MaxKills is how many kills the log keeps: the newest.
	MaxKills = 10
	// MaxKillCmdline is the most of a victim's command line the log keeps (an agent's tool can
	// be handed a whole prompt), so that MaxKills records fit MaxKillLogFile many times over.
	MaxKillCmdline = 4096
	// MaxKillLogFile bounds the read: a larger file is refused, not read in part.
	MaxKillLogFile = 1 << 20
)

// KillRecord is one kill, as the log keeps it.
type KillRecord struct {
	Time   time.Time `json:"time"`
	Killer string    `json:"killer"` // kernel (oom_kill) or the supervisor (pressure_kill, stray_killed)
	Signal string    `json:"signal,omitempty"`
	Victim Victim    `json:"victim"`
}

// KillLog is the writer's side: the kills so far, and the file it replaces whole after each.
type KillLog struct {
	// Path is the file; "" keeps the log in memory only (no runtime directory).
	Path string
	// WriteFile replaces Path with data atomically, so that a reader sees the old log or the
	// new one, never half of one.
	WriteFile func(path string, data []byte, perm os.FileMode) error

	kills []KillRecord
}

// Append adds k, its command line trimmed to MaxKillCmdline, drops the oldest beyond MaxKills
// and rewrites the file, mode 0600: the victims' command lines are the user's business (a
// prompt or a path can be in them); root's fleet tooling reads the file anyway, and so does the
// user's own `status`.
func (l *KillLog) Append(k KillRecord) error {
	if len(k.Victim.Cmdline) > MaxKillCmdline {
		k.Victim.Cmdline = k.Victim.Cmdline[:MaxKillCmdline]
	}
	l.kills = append(l.kills, k)
	if len(l.kills) > MaxKills {
		l.kills = l.kills[len(l.kills)-MaxKills:]
	}
	if l.Path == "" {
		return nil
	}
	b, err := json.Marshal(l.kills)
	if err != nil {
		return fmt.Errorf("%s: %w", l.Path, err)
	}
	return l.WriteFile(l.Path, append(b, '\n'), 0o600)
}

// ReadKillLog reads the kill log the supervisor of uid keeps in dir, by userfile.Read's rules:
// what sits there is the user's choice, so a symlink, a FIFO, anything but a regular file owned
// by uid, or more than MaxKillLogFile bytes is refused with an error naming the file. The list
// is never nil (status prints it as []); no file is no kills and no error.
func ReadKillLog(dir string, uid int) ([]KillRecord, error) {
	b, err := userfile.Read(dir, KillLogFile, uid, MaxKillLogFile)
	if errors.Is(err, fs.ErrNotExist) {
		return []KillRecord{}, nil
	}
	if err != nil {
		return []KillRecord{}, err
	}
	kills := []KillRecord{}
	if err := json.Unmarshal(b, &kills); err != nil {
		return []KillRecord{}, fmt.Errorf("%s: %w", filepath.Join(dir, KillLogFile), err)
	}
	if kills == nil { // the file said null
		kills = []KillRecord{}
	}
	return kills, nil
}
