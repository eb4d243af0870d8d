//go:build linux

package main

import (
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"t3-supervise/cgroup"
	"t3-supervise/creds"
)

// The metrics of `status --format prom`, for node_exporter's textfile collector. Names follow
// https://prometheus.io/docs/practices/naming/: base units (bytes, seconds), _total for
// counters, _info and _build_info gauges of 1 that carry their value as a label. The one label
// of every series is user: no pid, agent leaf or version, which would make a new series at
// every restart (https://prometheus.io/docs/practices/instrumentation/#do-not-overuse-labels),
// except build_info's version and token_source_info's source, which change rarely and are what
// those series are for. A value the readings do not have is left out, never made up as 0.
var (
	mUnitState = desc("unit_state", "systemd's ActiveState of t3-supervise@USER.service: 1 for the current state, 0 for the others.", "state")
	mRestarts  = desc("unit_restarts_total", "systemd's NRestarts of the unit: automatic restarts since it was last started by hand.")
	mServerUp  = desc("server_up", "1 when the unit is active and t3 serve runs in its workload/server cgroup.")
	mReady     = desc("server_ready", "1 when t3 serve is up and answered the supervisor's last liveness probe (READY=1 given; without a state.json: systemd's SubState running).")
	mStart     = desc("start_time_seconds", "When the running supervisor started, in seconds since the epoch.")
	mAgents    = desc("agents", "Agent leaves in workload/agents: one per agent process tree, idle sessions included.")
	mBusy      = desc("busy", "1 when the agents are busy by their CPU time, or without a fresh verdict when any agent leaf holds a process (status --json \"busy\").")
	mServerRSS = desc("server_resident_memory_bytes", "Resident memory of the t3 serve process.")
	mMem       = desc("workload_memory_bytes", "memory.current of workload/ (t3 serve and its agents).")
	mMemPeak   = desc("workload_memory_peak_bytes", "memory.peak of workload/ since the supervisor created it (Linux 5.19+).")
	mMemMax    = desc("workload_memory_max_bytes", "memory.max of workload/: the kernel OOM-kills inside it above this. Absent when unlimited.")
	mAgentHigh = desc("agents_memory_high_bytes", "memory.high of workload/agents: agents are throttled above this, the server never. Absent when unlimited.")
	mOOM       = desc("oom_kills_total", "Processes the kernel OOM-killed in workload/ (memory.events oom_kill); restarts from 0 with the unit.")
	mPressure  = desc("pressure_kills_total", "Agent processes the supervisor ended under sustained memory pressure (pressure_kill events); restarts from 0 with the unit.")
	mLastKill  = desc("last_kill_timestamp_seconds", "When the latest OOM or pressure kill happened, in seconds since the epoch. Absent before the first kill.")
	mTokenSrc  = desc("token_source_info", "Where t3's Claude token comes from: vault, fallback (the materialized token, Vault failing at start) or none (opt-out).", "source")
	mKVVersion = desc("token_kv_version", "The KV v2 version of the user's secret whose token is in use.")
	mExpiry    = desc("token_expiry_timestamp_seconds", "When the user's setup token expires, in seconds since the epoch (custom_metadata.expires_at, or created_time plus --token-lifetime).")
	mVaultFail = desc("vault_refresh_failures_total", "Failed re-reads of the token from Vault (a failed read at start counts as one); restarts from 0 with the unit.")
	mVaultDown = desc("vault_refresh_failing", "1 from a failed re-read of the token until Vault answers again.")
	mRenewFail = desc("vault_token_renew_failures_total", "Failed renewals of the supervisor's periodic Vault token; restarts from 0 with the unit.")
	mBuild     = desc("build_info", "The running supervisor's version (not necessarily the installed binary's: a running unit moves to an upgraded binary when its user is idle).", "version", "goversion")
	mStale     = desc("binary_stale", "1 while the supervisor runs another binary than the one installed at its path (an upgrade it has not moved to yet: it moves when its user is idle, or when reloaded with --restart-on-upgrade=never). Absent when its binary cannot be told.")
)

// The ActiveState values of systemd's units (systemd/src/basic/unit-def.c, unit_active_state_table).
var activeStates = []string{"active", "reloading", "inactive", "failed", "activating", "deactivating", "maintenance"}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("t3_supervise_"+name, help, append([]string{"user"}, labels...), nil)
}

// writeProm prints the readings in the Prometheus text format (version 0.0.4, the one
// node_exporter's textfile collector reads). It is a pure function of the readings.
func writeProm(w io.Writer, units []unitReading) error {
	reg := prometheus.NewPedanticRegistry() // checks every metric against its Desc
	if err := reg.Register(unitsCollector(units)); err != nil {
		return err
	}
	families, err := reg.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range families {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}

// unitsCollector turns readings into metrics; collected once.
type unitsCollector []unitReading

func (c unitsCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c unitsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, u := range c {
		collectUnit(ch, u)
	}
}

func collectUnit(ch chan<- prometheus.Metric, u unitReading) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{u.User}, labels...)...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, u.User)
	}
	active := false
	if sd := u.Systemd; sd != nil {
		active = sd.ActiveState == "active"
		for _, s := range activeStates {
			gauge(mUnitState, b2f(sd.ActiveState == s), s)
		}
		counter(mRestarts, float64(sd.NRestarts))
	}
	rep, st := u.Report, u.State
	if at := u.tokenExpiry(); at != nil {
		gauge(mExpiry, seconds(*at))
	}
	up := active && rep != nil && rep.Server != nil
	gauge(mServerUp, b2f(up))
	ready := up && u.Systemd.SubState == "running" // READY=1 was given (Type=notify)
	if st != nil {
		ready = up && st.Ready && st.Answering
	}
	gauge(mReady, b2f(ready))

	if rep != nil {
		gauge(mAgents, float64(len(rep.Agents)))
		gauge(mBusy, b2f(rep.Busy))
		if rep.Server != nil {
			gauge(mServerRSS, float64(rep.Server.RSS))
		}
		gauge(mMem, float64(rep.Workload.Current))
		if rep.Workload.Peak > 0 {
			gauge(mMemPeak, float64(rep.Workload.Peak))
		}
		if v, ok := limitBytes(rep.Workload.Max); ok {
			gauge(mMemMax, v)
		}
		if v, ok := limitBytes(rep.AgentsHigh); ok {
			gauge(mAgentHigh, v)
		}
		counter(mOOM, float64(rep.Workload.Events.OOMKill))
		if t, ok := lastKill(rep.LastKills); ok {
			gauge(mLastKill, seconds(t))
		}
		// status --json's binary_stale: the kernel's answer (readBinaryState), so a unit that
		// stays on the old binary long after an upgrade (always busy, or never) can be alerted on.
		if b := rep.BinaryState; b != nil {
			gauge(mStale, b2f(b.BinaryStale))
		}
	}
	if c := u.Credential; c.TokenSource != "" {
		gauge(mTokenSrc, 1, tokenSourceLabel(c.TokenSource))
		if c.KVVersion > 0 {
			gauge(mKVVersion, float64(c.KVVersion))
		}
	}
	if st == nil {
		return
	}
	gauge(mStart, seconds(st.Started))
	counter(mPressure, float64(st.PressureKills))
	counter(mVaultFail, float64(st.VaultRefreshFailures))
	gauge(mVaultDown, b2f(st.VaultFailing))
	counter(mRenewFail, float64(st.VaultRenewFailures))
	gauge(mBuild, 1, labelValue(st.Version), labelValue(st.GoVersion))
}

// tokenSourceLabel is T3_TOKEN_SOURCE as a label value a selector can name without quoting
// parentheses; anything unknown (the file is the user's) is "unknown".
func tokenSourceLabel(from string) string {
	switch from {
	case creds.FromVault:
		return "vault"
	case creds.FromFallback:
		return "fallback"
	case creds.FromNone:
		return "none"
	}
	return "unknown"
}

// labelValue bounds a label value taken from the user's state file: printable ASCII of a
// version string, at most 64 bytes, so that a forged file cannot flood the series with junk.
func labelValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r > ' ' && r < 0x7f && r != '"' && r != '\\' {
			return r
		}
		return -1
	}, s)
	if len(s) > 64 {
		s = s[:64]
	}
	if s == "" {
		return "unknown"
	}
	return s
}

// limitBytes is a cgroup limit file's value in bytes; "max" (no limit) and junk are not.
func limitBytes(s string) (float64, bool) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil || v == math.MaxInt64 {
		return 0, false
	}
	return float64(v), true
}

func lastKill(kills []cgroup.KillRecord) (time.Time, bool) {
	var last time.Time
	for _, k := range kills {
		if k.Time.After(last) {
			last = k.Time
		}
	}
	return last, !last.IsZero()
}

func seconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
