//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	sdbus "github.com/coreos/go-systemd/v22/dbus"

	"t3-supervise/cgroup"
)

// unitReading is what `status --all` learns of one unit, from each of its three sources. Any
// of them may be missing: systemd forgot an inactive unit, a failed unit has no cgroup, a
// supervisor older than state.json wrote none.
type unitReading struct {
	User    string
	Systemd *unitSystemd     // nil: systemd has not loaded the unit
	Report  *statusReport    // nil: no subtree (not running under t3-supervise)
	State   *supervisorState // nil: no state file in the runtime directory
	// Credential is the token as the supervisor last knew it (credential.json): Report's
	// when the unit runs, else read on its own; empty when there is none.
	Credential credentialState
}

// unitSystemd is what systemd says of a unit (org.freedesktop.systemd1(5)).
type unitSystemd struct {
	ActiveState  string // active, activating, deactivating, inactive, failed (reloading, maintenance)
	SubState     string
	NRestarts    uint32 // automatic restarts (Restart=) since the unit was last started by hand
	ControlGroup string
}

// systemdUnits asks systemd for the loaded units whose names match pattern, by user.
type systemdUnits func(ctx context.Context, pattern string) (map[string]unitSystemd, error)

// systemdDBus is systemdUnits over D-Bus: the system bus, or systemd's private socket
// (/run/systemd/private, root only) where no dbus-daemon runs. It reads; it needs no privilege.
func systemdDBus(ctx context.Context, pattern string) (map[string]unitSystemd, error) {
	conn, err := sdbus.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("asking systemd which units there are: %w", err)
	}
	defer conn.Close()
	list, err := conn.ListUnitsByPatternsContext(ctx, nil, []string{pattern})
	if err != nil {
		return nil, fmt.Errorf("systemd ListUnitsByPatterns %s: %w", pattern, err)
	}
	units := map[string]unitSystemd{}
	for _, u := range list {
		userName, ok := unitUser(u.Name)
		if !ok || u.LoadState != "loaded" {
			continue
		}
		s := unitSystemd{ActiveState: u.ActiveState, SubState: u.SubState}
		props, err := conn.GetUnitTypePropertiesContext(ctx, u.Name, "Service")
		if err != nil {
			return nil, fmt.Errorf("systemd properties of %s: %w", u.Name, err)
		}
		s.NRestarts, _ = props["NRestarts"].(uint32)
		s.ControlGroup, _ = props["ControlGroup"].(string)
		units[userName] = s
	}
	return units, nil
}

// unitUser is USER of t3-supervise@USER.service. The unit's User=%i is the instance as it
// stands (systemd.unit(5): %i is not unescaped), so it is taken as it stands too.
func unitUser(unit string) (string, bool) {
	u, ok := strings.CutPrefix(unit, "t3-supervise@")
	if !ok {
		return "", false
	}
	u, ok = strings.CutSuffix(u, ".service")
	return u, ok && validUserName(u)
}

// validUserName keeps names that come from directory listings out of paths they could leave.
func validUserName(u string) bool {
	return u != "" && u != "." && u != ".." && len(u) <= 256 && utf8.ValidString(u) && !strings.ContainsAny(u, "/\x00\n")
}

// gatherUnits reads every unit (--all), or in.user's, from systemd, the cgroup tree and the
// runtime directories. Only systemd's failure is an error: a unit's missing cgroup or state
// file is a reading too.
func gatherUnits(ctx context.Context, in statusInput) ([]unitReading, error) {
	pattern := "t3-supervise@*.service"
	if !in.all {
		pattern = unitName(in.user)
	}
	sd, err := in.systemd(ctx, pattern)
	if err != nil {
		return nil, err
	}
	users := map[string]bool{}
	if in.all {
		for u := range sd {
			users[u] = true
		}
		for _, u := range cgroup.UnitUsers(in.mount) {
			users[u] = true
		}
		entries, _ := os.ReadDir(in.runtimeRoot)
		for _, e := range entries {
			if e.IsDir() {
				users[e.Name()] = true
			}
		}
	} else {
		users[in.user] = true
	}
	names := make([]string, 0, len(users))
	for u := range users {
		if validUserName(u) {
			names = append(names, u)
		}
	}
	sort.Strings(names)
	readings := make([]unitReading, 0, len(names))
	for _, u := range names {
		r := unitReading{User: u}
		cg := in.cgroup
		if s, ok := sd[u]; ok {
			r.Systemd = &s
			if cg == "" {
				cg = s.ControlGroup
			}
		}
		dir := in.unitRuntimeDir(u)
		uid, err := in.uidOf(u)
		if err != nil {
			uid = -1 // no such user here: none of the directory's files is read
		}
		r.Report, _ = readUnit(u, uid, in.tree(u, cg), dir)
		if r.Report != nil {
			r.Credential = r.Report.credentialState
		} else {
			r.Credential = readCredentialState(dir, uid)
		}
		r.State = readState(dir, uid)
		readings = append(readings, r)
	}
	return readings, nil
}

// tokenExpiry is t3_supervise_token_expiry_timestamp_seconds: the token's expiry horizon
// (custom_metadata.expires_at of the user's secret, or its created_time plus --token-lifetime),
// as the running supervisor keeps it for `status` (token_expires_at); nil: unknown.
func (u unitReading) tokenExpiry() *time.Time { return u.Credential.TokenExpiresAt }

// printUnits prints the readings in format: prom (writeProm), json (the reports of the running
// units, as an array) or text (status for each, a line for the others).
func printUnits(w io.Writer, format string, units []unitReading) error {
	switch format {
	case "prom":
		return writeProm(w, units)
	case "json":
		reps := []statusReport{}
		for _, u := range units {
			if u.Report != nil {
				reps = append(reps, *u.Report)
			}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(reps)
	}
	for _, u := range units {
		if u.Report != nil {
			printStatus(w, *u.Report)
			continue
		}
		state := "not loaded by systemd"
		if u.Systemd != nil {
			state = u.Systemd.ActiveState + " (" + u.Systemd.SubState + ")"
		}
		fmt.Fprintf(w, "%s  not running under t3-supervise: %s\n", unitName(u.User), state)
	}
	return nil
}
