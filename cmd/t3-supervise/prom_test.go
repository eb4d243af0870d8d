//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"t3-supervise/cgroup"
	"t3-supervise/creds"
)

// goldenProm is writeProm's output for sampleReadings: the host tier runs `promtool check
// metrics` on it (test/host/run), the VM tier on a real host's output.
const goldenProm = "testdata/status-all.prom"

func sampleReadings() []unitReading {
	expires := time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	kill := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	return []unitReading{
		{
			User:    "alice",
			Systemd: &unitSystemd{ActiveState: "active", SubState: "running", NRestarts: 2, ControlGroup: "/system.slice/x"},
			Report: &statusReport{User: "alice", Status: &cgroup.Status{
				Server:     &cgroup.ProcInfo{PID: 10, RSS: 200 << 20},
				Workload:   cgroup.Memory{Current: 3 << 30, Peak: 5 << 30, Max: "17179869184", Events: cgroup.MemoryEvents{OOMKill: 4}},
				AgentsHigh: "12884901888",
				Agents:     []cgroup.AgentStatus{{Leaf: "a1"}, {Leaf: "a2"}},
				Busy:       true,
			}, LastKills: []cgroup.KillRecord{{Time: kill.Add(-time.Hour)}, {Time: kill}},
				// Upgraded under a busy user: the move waits.
				BinaryState: &BinaryState{Binary: "/usr/bin/t3-supervise", RunningVersion: "1.2.3-1", InstalledVersion: "1.2.4-1",
					BinaryStale: true, UpgradePending: true, RestartOnUpgrade: "when-idle"}},
			Credential: credentialState{TokenSource: creds.FromVault, KVVersion: 3, TokenExpiresAt: &expires, TokenExpirySource: "custom_metadata"},
			State: &supervisorState{Schema: 1, Version: "1.2.3-1", GoVersion: "go1.26.8", Started: kill.Add(-24 * time.Hour),
				Ready: true, Answering: true,
				PressureKills: 1, VaultRefreshFailures: 5, VaultRenewFailures: 1},
		},
		{
			// Failed: systemd knows it, nothing else is left of it.
			User:    "bob",
			Systemd: &unitSystemd{ActiveState: "failed", SubState: "failed", NRestarts: 7},
		},
		{
			// Running on the materialized token, Vault failing, its server not answering, no
			// limits: nothing made up where a reading is missing.
			User:    "carol",
			Systemd: &unitSystemd{ActiveState: "active", SubState: "running"},
			Report: &statusReport{User: "carol", Status: &cgroup.Status{
				Server: &cgroup.ProcInfo{PID: 11}, Workload: cgroup.Memory{Current: 1 << 20, Max: "max"}, AgentsHigh: "max",
			}, LastKills: []cgroup.KillRecord{},
				BinaryState: &BinaryState{Binary: "/usr/bin/t3-supervise", RunningVersion: "1.2.2-1", RestartOnUpgrade: "when-idle"}},
			Credential: credentialState{TokenSource: creds.FromFallback},
			State: &supervisorState{Schema: 1, Version: "1.2.2-1\"\n{evil}", GoVersion: "go1.26.8", Started: kill,
				Ready: true, Answering: false, VaultRefreshFailures: 1, VaultFailing: true},
		},
	}
}

func TestWritePromGolden(t *testing.T) {
	var b bytes.Buffer
	if err := writeProm(&b, sampleReadings()); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(goldenProm, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenProm)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("writeProm differs from %s (go test ./cmd/t3-supervise -run WritePromGolden -update):\n%s", goldenProm, b.String())
	}
	problems, err := promlint.New(bytes.NewReader(b.Bytes())).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// parseProm reads text exposition back into families, keyed by name.
func parseProm(t *testing.T, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("parsing the output: %v\n%s", err, text)
	}
	return mfs
}

// value is the sample of family name for user (and the extra label pairs), or an error.
func value(mfs map[string]*dto.MetricFamily, name, user string, labels ...string) (float64, error) {
	mf, ok := mfs[name]
	if !ok {
		return 0, fmt.Errorf("no family %s", name)
	}
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if got["user"] != user {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if got[labels[i]] != labels[i+1] {
				continue next
			}
		}
		if m.Gauge != nil {
			return m.GetGauge().GetValue(), nil
		}
		return m.GetCounter().GetValue(), nil
	}
	return 0, fmt.Errorf("no %s for user %s %v", name, user, labels)
}

// series is one sample a test expects: family, user, more label pairs, value.
type series struct {
	name, user string
	labels     []string
	want       float64
}

func checkSeries(t *testing.T, mfs map[string]*dto.MetricFamily, want []series) {
	t.Helper()
	for _, c := range want {
		got, err := value(mfs, c.name, c.user, c.labels...)
		if err != nil || got != c.want {
			t.Errorf("%s{user=%q %v} = %v, %v; want %v", c.name, c.user, c.labels, got, err, c.want)
		}
	}
}

func TestWritePromValues(t *testing.T) {
	var b bytes.Buffer
	if err := writeProm(&b, sampleReadings()); err != nil {
		t.Fatal(err)
	}
	mfs := parseProm(t, b.Bytes())
	checkSeries(t, mfs, []series{
		{"t3_supervise_unit_state", "alice", []string{"state", "active"}, 1},
		{"t3_supervise_unit_state", "alice", []string{"state", "failed"}, 0},
		{"t3_supervise_unit_state", "bob", []string{"state", "failed"}, 1},
		{"t3_supervise_unit_restarts_total", "bob", nil, 7},
		{"t3_supervise_server_up", "alice", nil, 1},
		{"t3_supervise_server_ready", "alice", nil, 1},
		{"t3_supervise_server_up", "bob", nil, 0},
		{"t3_supervise_server_ready", "bob", nil, 0},
		{"t3_supervise_server_up", "carol", nil, 1},
		{"t3_supervise_server_ready", "carol", nil, 0}, // its last probe got no answer
		{"t3_supervise_agents", "alice", nil, 2},
		{"t3_supervise_busy", "alice", nil, 1},
		{"t3_supervise_busy", "carol", nil, 0},
		{"t3_supervise_workload_memory_bytes", "alice", nil, 3 << 30},
		{"t3_supervise_workload_memory_peak_bytes", "alice", nil, 5 << 30},
		{"t3_supervise_workload_memory_max_bytes", "alice", nil, 16 << 30},
		{"t3_supervise_agents_memory_high_bytes", "alice", nil, 12 << 30},
		{"t3_supervise_server_resident_memory_bytes", "alice", nil, 200 << 20},
		{"t3_supervise_oom_kills_total", "alice", nil, 4},
		{"t3_supervise_pressure_kills_total", "alice", nil, 1},
		{"t3_supervise_last_kill_timestamp_seconds", "alice", nil, float64(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).Unix())},
		{"t3_supervise_token_source_info", "alice", []string{"source", "vault"}, 1},
		{"t3_supervise_token_source_info", "carol", []string{"source", "fallback"}, 1},
		{"t3_supervise_token_kv_version", "alice", nil, 3},
		{"t3_supervise_token_expiry_timestamp_seconds", "alice", nil, float64(time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC).Unix())},
		{"t3_supervise_vault_refresh_failures_total", "alice", nil, 5},
		{"t3_supervise_vault_refresh_failing", "alice", nil, 0},
		{"t3_supervise_vault_refresh_failing", "carol", nil, 1},
		{"t3_supervise_vault_token_renew_failures_total", "alice", nil, 1},
		{"t3_supervise_build_info", "alice", []string{"version", "1.2.3-1", "goversion", "go1.26.8"}, 1},
		{"t3_supervise_build_info", "carol", []string{"version", "1.2.2-1{evil}"}, 1},
	})
	// Missing readings are missing series, not zeros.
	for _, c := range []struct{ name, user string }{
		{"t3_supervise_workload_memory_bytes", "bob"},
		{"t3_supervise_workload_memory_max_bytes", "carol"},
		{"t3_supervise_agents_memory_high_bytes", "carol"},
		{"t3_supervise_last_kill_timestamp_seconds", "carol"},
		{"t3_supervise_token_expiry_timestamp_seconds", "carol"},
		{"t3_supervise_build_info", "bob"},
	} {
		if v, err := value(mfs, c.name, c.user); err == nil {
			t.Errorf("%s{user=%q} = %v; want no series", c.name, c.user, v)
		}
	}
	// Every series has its user, none a pid.
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetName(), "pid") {
					t.Errorf("%s has a label %s", name, l.GetName())
				}
			}
		}
	}
}

// TestMetricsDocumented: every metric writeProm can print is in the README's table.
func TestMetricsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := writeProm(&b, sampleReadings()); err != nil {
		t.Fatal(err)
	}
	for name := range parseProm(t, b.Bytes()) {
		if !bytes.Contains(readme, []byte("`"+name+"`")) {
			t.Errorf("README.md does not document %s", name)
		}
	}
}

// fakeHost is a host with alice's unit running (a cgroup tree with this test process as its
// server and supervisor, a runtime directory with state and kills) and bob's failed.
func fakeHost(t *testing.T) statusInput {
	t.Helper()
	mount, run := t.TempDir(), t.TempDir()
	base := filepath.Join(mount, "system.slice", `system-t3\x2dsupervise.slice`, "t3-supervise@alice.service")
	pid := fmt.Sprint(os.Getpid())
	for file, v := range map[string]string{
		"supervisor/cgroup.procs":          pid,
		"workload/cgroup.procs":            "",
		"workload/memory.current":          "1048576",
		"workload/memory.peak":             "2097152",
		"workload/memory.max":              "17179869184",
		"workload/memory.events":           "low 0\nhigh 3\nmax 9\noom 2\noom_kill 2\noom_group_kill 0\n",
		"workload/server/cgroup.procs":     pid,
		"workload/agents/memory.high":      "12884901888",
		"workload/agents/a1/cgroup.procs":  "",
		"workload/agents/a1/memory.events": "",
	} {
		p := filepath.Join(base, file)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(run, "alice")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st := newSupervisorState(false, time.Now())
	st.Ready, st.Answering, st.PressureKills = true, true, 1
	if err := writeFileAtomic(filepath.Join(dir, stateFile), st); err != nil {
		t.Fatal(err)
	}
	expires := time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	cred := credentialState{TokenSource: creds.FromVault, KVVersion: 2, TokenExpiresAt: &expires, TokenExpirySource: "created_time"}
	if err := writeFileAtomic(filepath.Join(dir, credentialFile), cred); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(filepath.Join(dir, cgroup.KillLogFile), []cgroup.KillRecord{{Time: time.Unix(1764000000, 0), Killer: "kernel"}}); err != nil {
		t.Fatal(err)
	}
	return statusInput{all: true, format: "prom", mount: mount, runtimeRoot: run,
		// The fake host's users are not this host's: the files are the test's own.
		uidOf: func(string) (int, error) { return os.Getuid(), nil }, fakeFS: true,
		systemd: func(_ context.Context, pattern string) (map[string]unitSystemd, error) {
			if pattern != "t3-supervise@*.service" {
				t.Errorf("systemd asked for %q", pattern)
			}
			return map[string]unitSystemd{
				"alice": {ActiveState: "active", SubState: "running", NRestarts: 1, ControlGroup: `/system.slice/system-t3\x2dsupervise.slice/t3-supervise@alice.service`},
				"bob":   {ActiveState: "failed", SubState: "failed", NRestarts: 5},
			}, nil
		}}
}

func TestStatusAllPromOutput(t *testing.T) {
	in := fakeHost(t)
	outDir := t.TempDir()
	in.output = filepath.Join(outDir, "t3-supervise.prom")
	var stdout, stderr bytes.Buffer
	if code := statusMain(in, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("--output printed to stdout: %q", stdout.String())
	}
	text, err := os.ReadFile(in.output)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(in.output); fi.Mode().Perm() != 0o644 {
		t.Errorf("%s: mode %v, want 0644 (node_exporter runs as its own user)", in.output, fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 1 {
		t.Errorf("left in the collector directory: %v", entries)
	}
	mfs := parseProm(t, text)
	checkSeries(t, mfs, []series{
		{"t3_supervise_server_up", "alice", nil, 1},
		{"t3_supervise_server_ready", "alice", nil, 1},
		{"t3_supervise_agents", "alice", nil, 1},
		{"t3_supervise_busy", "alice", nil, 0},
		{"t3_supervise_workload_memory_bytes", "alice", nil, 1 << 20},
		{"t3_supervise_workload_memory_peak_bytes", "alice", nil, 2 << 20},
		{"t3_supervise_workload_memory_max_bytes", "alice", nil, 16 << 30},
		{"t3_supervise_agents_memory_high_bytes", "alice", nil, 12 << 30},
		{"t3_supervise_oom_kills_total", "alice", nil, 2},
		{"t3_supervise_pressure_kills_total", "alice", nil, 1},
		{"t3_supervise_last_kill_timestamp_seconds", "alice", nil, 1764000000},
		{"t3_supervise_unit_restarts_total", "alice", nil, 1},
		{"t3_supervise_token_kv_version", "alice", nil, 2},
		{"t3_supervise_token_source_info", "alice", []string{"source", "vault"}, 1},
		{"t3_supervise_token_expiry_timestamp_seconds", "alice", nil, float64(time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC).Unix())},
		{"t3_supervise_unit_state", "bob", []string{"state", "failed"}, 1},
		{"t3_supervise_server_up", "bob", nil, 0},
	})
	if _, err := value(mfs, "t3_supervise_build_info", "alice", "version", buildVersion()); err != nil {
		t.Error(err)
	}

	// A second run replaces the file whole.
	in.systemd = func(context.Context, string) (map[string]unitSystemd, error) { return nil, nil }
	if code := statusMain(in, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	text, _ = os.ReadFile(in.output)
	if mfs := parseProm(t, text); func() error { _, err := value(mfs, "t3_supervise_unit_state", "bob", "state", "failed"); return err }() == nil {
		t.Errorf("bob is still there after systemd forgot him:\n%s", text)
	}
}

func TestStatusAllSystemdFailureWritesNothing(t *testing.T) {
	in := fakeHost(t)
	in.output = filepath.Join(t.TempDir(), "t3-supervise.prom")
	if err := os.WriteFile(in.output, []byte("# old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in.systemd = func(context.Context, string) (map[string]unitSystemd, error) {
		return nil, errors.New("no systemd here")
	}
	var stdout, stderr bytes.Buffer
	if code := statusMain(in, &stdout, &stderr); code != exitStatusSystemd {
		t.Errorf("exit %d, want %d", code, exitStatusSystemd)
	}
	if b, _ := os.ReadFile(in.output); string(b) != "# old\n" {
		t.Errorf("the file was replaced: %q", b)
	}
	if !strings.Contains(stderr.String(), "no systemd here") {
		t.Errorf("stderr does not say why: %q", stderr.String())
	}
}

func TestStatusFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--all", "--user", "alice"},
		{"--format", "yaml"},
		{"--json", "--format", "prom"},
	} {
		var stdout, stderr bytes.Buffer
		if code := runStatus(args, &stdout, &stderr); code != exitUsage {
			t.Errorf("status %v: exit %d, want %d (%s)", args, code, exitUsage, stderr.String())
		}
	}
}

// TestStateFile: what the running supervisor writes for the metrics, as its events happen.
func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	h := &healthState{statePath: filepath.Join(dir, stateFile), notifier: &noteRecorder{},
		state: newSupervisorState(true, time.Now())}
	h.saveState(func(*supervisorState) {})
	st := readState(dir, os.Getuid())
	if st == nil || !st.VaultFailing || st.VaultRefreshFailures != 1 || st.Version != buildVersion() {
		t.Fatalf("at start on the fallback: %+v", st)
	}
	h.noteEvent(cgroup.PressureKill{Victim: cgroup.Victim{PID: 1}, Signal: "SIGTERM"})
	h.noteEvent(cgroup.OOMKill{Victim: cgroup.Victim{PID: 2}})
	r := &rotation{failures: 2, outage: true}
	h.noteRefresh(r)
	if st = readState(dir, os.Getuid()); st.PressureKills != 1 || st.VaultRefreshFailures != 3 || !st.VaultFailing {
		t.Fatalf("after a pressure kill and two failed re-reads: %+v", st)
	}
	// The watch's PSI mode, for status's psi_mode and psi_mode_reason.
	h.noteEvent(cgroup.PressureMode{PSIMode: cgroup.PSIMode{Mode: cgroup.PSISampling, Reason: "--psi-trigger off"}})
	if st = readState(dir, os.Getuid()); st.PSIMode != cgroup.PSISampling || st.PSIModeReason != "--psi-trigger off" {
		t.Fatalf("after the watch said its mode: %+v", st)
	}
	r.outage, r.lastOK = false, time.Now()
	h.noteRefresh(r)
	if st = readState(dir, os.Getuid()); st.VaultRefreshFailures != 3 || st.VaultFailing {
		t.Fatalf("after Vault answered again: %+v", st)
	}
	// Nothing changed: nothing written.
	before, _ := os.Stat(h.statePath)
	h.noteRefresh(r)
	if after, _ := os.Stat(h.statePath); !os.SameFile(before, after) {
		t.Error("the state file was rewritten without a change")
	}
}

func TestStatusAllTextAndJSON(t *testing.T) {
	in := fakeHost(t)
	var stdout, stderr bytes.Buffer
	in.format = "json"
	if code := statusMain(in, &stdout, &stderr); code != exitOK {
		t.Fatalf("json: exit %d: %s", code, stderr.String())
	}
	var reps []statusReport
	if err := json.Unmarshal(stdout.Bytes(), &reps); err != nil || len(reps) != 1 || reps[0].User != "alice" || reps[0].Server == nil {
		t.Errorf("--all --json: the running units' reports, want alice's alone: %v %s", err, stdout.String())
	}
	stdout.Reset()
	in.format = "text"
	if code := statusMain(in, &stdout, &stderr); code != exitOK {
		t.Fatalf("text: exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"t3-supervise@alice.service  /", "t3-supervise@bob.service  not running under t3-supervise: failed (failed)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("--all text lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestUnitUser(t *testing.T) {
	for unit, want := range map[string]string{
		"t3-supervise@alice.service":     "alice",
		"t3-supervise@a-b.service":       "a-b", // User=%i: the instance as it stands
		"t3-supervise@.service":          "",
		"t3-supervise@alice.timer":       "",
		"t3-supervise-metrics.service":   "",
		"t3-supervise@...service":        "",
		"t3-supervise@a/../b.service":    "",
		"t3-serve@alice.service":         "",
		"t3-supervise@alice.service.bak": "",
	} {
		got, ok := unitUser(unit)
		if got != want && ok || ok != (want != "") {
			t.Errorf("unitUser(%q) = %q, %v; want %q", unit, got, ok, want)
		}
	}
}
