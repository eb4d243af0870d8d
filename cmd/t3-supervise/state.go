//go:build linux

package main

import (
	"runtime"
	"time"
)

// stateFile is what a running supervisor knows that cgroupfs and systemd do not: whether t3
// answers its probe, the kills it made itself, Vault's re-reads. It lives next to kills.json in
// the unit's RuntimeDirectory (runtimefiles.go), is rewritten atomically whenever a value
// changes, and is read by `status --all --format prom`.
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
	// The token's source, KV version and expiry are not here: credential.json (credentialState)
	// has them, written by the expiry watch that follows every re-read.

	// PressureKills counts the supervisor's own kills; the kernel's OOM kills are in the
	// workload's memory.events.
	PressureKills uint64 `json:"pressure_kills"`
	// VaultRefreshFailures counts failed re-reads of the token (a failed read at start, covered
	// by the materialized token, counts as one); VaultFailing is true from a failure until Vault
	// answers again.
	VaultRefreshFailures uint64 `json:"vault_refresh_failures"`
	VaultFailing         bool   `json:"vault_failing"`
	VaultRenewFailures   uint64 `json:"vault_renew_failures"`
	// PSIMode: how the watch learns of memory pressure (cgroup.PSIMode), as it said when it
	// started; absent with the pressure kill off or without a cgroup.
	PSIMode       string `json:"psi_mode,omitempty"`
	PSIModeReason string `json:"psi_mode_reason,omitempty"`
}

func newSupervisorState(fallback bool, now time.Time) supervisorState {
	s := supervisorState{Schema: 1, Version: buildVersion(), GoVersion: runtime.Version(), Started: now}
	if fallback {
		// Vault failed at start and the materialized token covers it: that outage is on until
		// a re-read succeeds.
		s.VaultRefreshFailures, s.VaultFailing = 1, true
	}
	return s
}

// readState is the running supervisor's stateFile, nil when there is none (not running, or a
// supervisor older than the file).
func readState(dir string, uid int) *supervisorState {
	var s supervisorState
	if readRuntimeJSON(dir, stateFile, uid, &s) != nil || s.Schema < 1 {
		return nil
	}
	return &s
}
