//go:build linux

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"
)

// stateFile is what a running supervisor knows that cgroupfs and systemd do not: whether t3
// answers its probe, where its token came from, the kills it made itself, Vault's re-reads. It
// lives next to kills.json in the unit's RuntimeDirectory (removed by systemd on stop), is
// rewritten atomically whenever a value changes, and is read by `status --all --format prom`.
// It is written by the supervisor, that is by the unit's user: its numbers are that user's own
// account, as everything in the unit's subtree is.
const stateFile = "state.json"

// supervisorState is stateFile's content. Stable: fields are only added.
type supervisorState struct {
	Schema    int       `json:"schema"` // 1
	Version   string    `json:"version"`
	GoVersion string    `json:"go_version"`
	Started   time.Time `json:"started"`
	Updated   time.Time `json:"updated"`
	// Ready: systemd was told READY=1; Answering: the last probe got an answer.
	Ready     bool `json:"ready"`
	Answering bool `json:"answering"`
	// TokenSource is where t3's token came from (creds.FromVault, FromFallback, FromNone).
	TokenSource string `json:"token_source"`
	KVVersion   int    `json:"kv_version,omitempty"`
	// PressureKills counts the supervisor's own kills; the kernel's OOM kills are in the
	// workload's memory.events.
	PressureKills uint64 `json:"pressure_kills"`
	// VaultRefreshFailures counts failed re-reads of the token (a failed read at start, covered
	// by the materialized token, counts as one); VaultFailing is true from a failure until Vault
	// answers again.
	VaultRefreshFailures uint64 `json:"vault_refresh_failures"`
	VaultFailing         bool   `json:"vault_failing"`
	VaultRenewFailures   uint64 `json:"vault_renew_failures"`
}

// version is the package version, set at build time (Makefile: -X main.version=...); a build
// without it reports the module version Go recorded, "(devel)" for a plain go build.
var version string

func binaryVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

func newSupervisorState(tokenFrom string, kvVersion int, fallback bool, now time.Time) supervisorState {
	s := supervisorState{Schema: 1, Version: binaryVersion(), GoVersion: runtime.Version(), Started: now,
		TokenSource: tokenFrom, KVVersion: kvVersion}
	if fallback {
		// Vault failed at start and the materialized token covers it: that outage is on until
		// a re-read succeeds.
		s.VaultRefreshFailures, s.VaultFailing = 1, true
	}
	return s
}

// readRuntimeJSON reads one of the supervisor's files in its runtime directory into v. The
// files belong to the unit's user; `status` may run as root.
func readRuntimeJSON(dir, name string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// readState is the running supervisor's stateFile, nil when there is none (not running, or a
// supervisor older than the file).
func readState(dir string) *supervisorState {
	var s supervisorState
	if readRuntimeJSON(dir, stateFile, &s) != nil || s.Schema < 1 {
		return nil
	}
	return &s
}

// writeAtomic replaces path with data: a temporary file in the same directory, fsync, rename(2),
// so that a reader (node_exporter's textfile collector, `status`) sees the old file or the new
// one, never half of one, and a crash right after leaves the new one on disk.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// The rename itself is durable once the directory is (fsync(2): "Calling fsync() does not
	// necessarily ensure that the entry in the directory containing the file has also reached
	// disk").
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
