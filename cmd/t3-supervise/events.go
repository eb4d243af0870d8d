//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"t3-supervise/cgroup"
	"t3-supervise/supervise"
)

// identifier is SYSLOG_IDENTIFIER of every entry. Never "claude-auth-sync": the fleet alerts on
// that identifier's lines containing FAIL.
const identifier = "t3-supervise"

// eventKind is one kind of event: a stable name (T3_EVENT), a stable MESSAGE_ID for journalctl -x
// and the catalog (units/t3-supervise.catalog), and a syslog priority.
type eventKind struct {
	Name     string
	ID       string
	Priority journal.Priority
}

// event is one thing that happened, as a value: one struct type per kind (below), its journald
// fields as typed Go fields. A field's journald name is its struct tag, nowhere else:
//
//	`journal:"T3_NAME"`            always sent (fmt.Sprint of the value; time.Time as RFC 3339 UTC)
//	`journal:"T3_NAME,omitempty"`  sent unless the value is zero
//	`journal:"T3_NAME=value"`      a constant of the kind (on a blank field: _ struct{})
//	`journal:"-"`                  only for the message
//
// A pointer field is sent when not nil; an untagged struct field (Victim, ExitInfo) lends its
// own tagged fields. The message is the type's message method: what operators read in the
// journal, byte for byte as before the types existed (contrib/ rules and tests match on it).
type event interface {
	message() string
}

// eventTable is every kind: its type, name, MESSAGE_ID and priority. IDs are fixed forever once
// released: operators filter on them (journalctl MESSAGE_ID=...), and the catalog explains each
// one; docs/events.md lists them in this order. A type with a message method that is not here
// fails TestEventTableIsComplete; so does a row without a catalog entry.
var eventTable = []struct {
	sample event
	kind   eventKind
}{
	{StartingEvent{}, eventKind{"starting", "923fd24016374604a3cc81ed4e5b0f01", journal.PriInfo}},
	{ConfigInvalidEvent{}, eventKind{"config_invalid", "34546b6027d448cf8f9e65d6d778bf6f", journal.PriErr}},
	{CredFoundEvent{}, eventKind{"credential_found", "30ec0ca804ee421cba7965b3373bd0b9", journal.PriInfo}},
	{CredOptOutEvent{}, eventKind{"credential_opt_out", "58f0cac629434646baa187d22f1b5533", journal.PriNotice}},
	{CredDeletedEvent{}, eventKind{"credential_deleted", "375c4ac028704f78b2a90e482ba255d0", journal.PriWarning}},
	{CredFallbackEvent{}, eventKind{"credential_fallback", "84bd3c4ef12b469cbcc192a361fe5ab0", journal.PriWarning}},
	{CredFailedEvent{}, eventKind{"credential_failed", "4bab1a2450de4101bd017618dec8d0ae", journal.PriErr}},
	{InheritedDroppedEvent{}, eventKind{"inherited_token_dropped", "7e6b8849461f4b72ac59d92c71a1e9da", journal.PriWarning}},
	{OverrideDroppedEvent{}, eventKind{"credential_override_dropped", "e827ae25852b4d07bf09c4c6e59bf458", journal.PriWarning}},
	{EnvFileWrittenEvent{}, eventKind{"env_file_written", "d0d45b43cc8a4d53b4cc9302dc9e7892", journal.PriInfo}},
	{EnvFileRemovedEvent{}, eventKind{"env_file_removed", "af8b53ef9d4b45ef8dec702b192bf296", journal.PriNotice}},
	{EnvFileFailedEvent{}, eventKind{"env_file_failed", "a2783bce625a40888e0b2f7259aefcb4", journal.PriErr}},
	{VaultRenewedEvent{}, eventKind{"vault_token_renewed", "335a44db9c2a47e8a7884cc2b670a60c", journal.PriDebug}},
	{VaultRenewFailedEvent{}, eventKind{"vault_token_renew_failed", "5f90fa5af3784dc6bdfbcfb7d4ad08f7", journal.PriWarning}},
	{ChildStartedEvent{}, eventKind{"child_started", "c778bf1a5a714c3d82a52f5121afd2f1", journal.PriInfo}},
	{ExecFailedEvent{}, eventKind{"exec_failed", "da7da9a40a194f68958791e7f6c4fff4", journal.PriErr}},
	{ChildExitedEvent{}, eventKind{"child_exited", "2e95e00971d240ad809b86ec1fa2f71c", journal.PriNotice}},
	{SignalEvent{}, eventKind{"signal", "dfd14835a45b4a6faf6e9a82a63907e9", journal.PriInfo}},
	{StoppingEvent{}, eventKind{"stopping", "c8576c2f1c8241d08d578dbc12e29e32", journal.PriInfo}},
	{StopEscalatedEvent{}, eventKind{"stop_escalated", "98d29d287c5b430d95c6c13655109ce3", journal.PriWarning}},
	{StoppedEvent{}, eventKind{"stopped", "ec86a0dc865a4423917a9620eff90411", journal.PriInfo}},
	{InternalErrorEvent{}, eventKind{"internal_error", "e052523447ab4fa8a833dbb3e68dc67d", journal.PriErr}},
	{CgroupReadyEvent{}, eventKind{"cgroup_ready", "39859b19c8274bf7842673fb87cb49d3", journal.PriInfo}},
	{CgroupFailedEvent{}, eventKind{"cgroup_failed", "1135c32098b04d6dad932b3c3e3a1c12", journal.PriErr}},
	{CgroupWarningEvent{}, eventKind{"cgroup_warning", "46c60ceb6386403da668ec87379e7e5a", journal.PriWarning}},
	{AgentPlacedEvent{}, eventKind{"agent_placed", "ec5c5cb2171b4764828118192589e3de", journal.PriInfo}},
	{AgentLeafRemovedEvent{}, eventKind{"agent_leaf_removed", "e80f8c35871a47f495b7eca604241bdd", journal.PriDebug}},
	{OOMKillEvent{}, eventKind{"oom_kill", "e910424a650240bcb1526a7f07752293", journal.PriWarning}},
	{PressureKillEvent{}, eventKind{"pressure_kill", "35ffbc03cdc348c499129f839d87e994", journal.PriWarning}},
	{ServerReadyEvent{}, eventKind{"server_ready", "5a0f4f0666a14194af1c0095776305a5", journal.PriInfo}},
	{ProbeFailedEvent{}, eventKind{"server_probe_failed", "67cd16ecdb7944b4a8d7f99335f87042", journal.PriWarning}},
	{UnresponsiveEvent{}, eventKind{"server_unresponsive", "5f77fa22ab92479cb1e9109aa8850fab", journal.PriErr}},
	{CredRotatedEvent{}, eventKind{"credential_rotated", "a7b4127aaef74743af654c6b4b45146f", journal.PriNotice}},
	{RefreshFailedEvent{}, eventKind{"credential_refresh_failed", "39ce5bd2b8c446ed8e9c57efc87e7261", journal.PriWarning}},
	{RefreshRecoveredEvent{}, eventKind{"credential_refresh_recovered", "61f41ab3f929417eb16e4d488bfad086", journal.PriInfo}},
	{RotationRestartEvent{}, eventKind{"rotation_restart", "82c3d65495b34a079f5a3365f2bfcc56", journal.PriNotice}},
	{PressureOffEvent{}, eventKind{"pressure_kill_unavailable", "737af932ca836b02f573f7c576bbfa89", journal.PriWarning}},
	{StrayKilledEvent{}, eventKind{"stray_killed", "2e74c1ab94b40e279873fcae3993f160", journal.PriWarning}},
	{ServerFoundEvent{}, eventKind{"server_behind_wrapper", "20da3b13179b827540d3afe37ca11998", journal.PriNotice}},
	{LimitRestoredEvent{}, eventKind{"limit_restored", "0d4dfbd2cd43449f8e72462619008747", journal.PriWarning}},
	// The token's expiry horizon (expiry.go): a warning ahead of time, an error once it has
	// passed (every agent's request then fails with 401), and a warning for an expires_at that
	// cannot be used.
	{CredExpiringEvent{}, eventKind{"credential_expiring", "75a5e038b07641b993ab464904ba032e", journal.PriWarning}},
	{CredExpiredEvent{}, eventKind{"credential_expired", "e2c61b7ca0e349fa9938ec3c258efc90", journal.PriErr}},
	{CredExpiryInvalidEvent{}, eventKind{"credential_expiry_invalid", "b91fa5d6dba649ef824ba955ceb47f25", journal.PriWarning}},
	{BinaryReplacedEvent{}, eventKind{"binary_replaced", "7fcb966e74074e2c8ca9f7dd394f3cf9", journal.PriNotice}},
	{BinaryRemovedEvent{}, eventKind{"binary_removed", "bfc1787baee24a93b127690e1be9cdc2", journal.PriWarning}},
	{UpgradeRequestedEvent{}, eventKind{"upgrade_requested", "6e6370c1d00f43cf9f04199e506de8b4", journal.PriNotice}},
	{UpgradePendingEvent{}, eventKind{"upgrade_pending", "c4225479d0eb4063ba00f473d91fdcf4", journal.PriInfo}},
	{UpgradeRefusedEvent{}, eventKind{"upgrade_refused", "cfcb988a638a4ce98dd3e15202cfa785", journal.PriErr}},
	{UpgradeRestartEvent{}, eventKind{"upgrade_restart", "da05b75173c44ebdab2c5b19f9a5e745", journal.PriNotice}},
	// The watch's PSI mode (cgroup/psi_linux.go), and process_mrelease(2) after a kill.
	{PressureModeEvent{}, eventKind{"pressure_mode", "6c6c1b837bd8474681cbc8cb3558350f", journal.PriInfo}},
	{MemoryReleasedEvent{}, eventKind{"memory_released", "e24c3b9107194e6bb94f6a6807666462", journal.PriDebug}},
}

// eventKinds lists every kind in the table's order, for the catalog test and the --help text;
// kindByType is how an event finds its kind.
var eventKinds, kindByType = func() ([]eventKind, map[reflect.Type]eventKind) {
	kinds, byType := make([]eventKind, 0, len(eventTable)), make(map[reflect.Type]eventKind, len(eventTable))
	for _, row := range eventTable {
		kinds = append(kinds, row.kind)
		byType[reflect.TypeOf(row.sample)] = row.kind
	}
	return kinds, byType
}()

// kindOf is e's kind. A type missing from eventTable cannot pass the tests; should one get
// this far it is reported as internal_error under its Go name rather than lost.
func kindOf(e event) (eventKind, bool) {
	k, ok := kindByType[reflect.TypeOf(e)]
	return k, ok
}

// fields are an event's structured journald fields beyond the common ones. Names follow
// journald's rules (uppercase, digits, underscore; systemd.journal-fields(7)).
type fields map[string]string

// events sends every event to journald through the native protocol, and also as a readable
// line to stderr unless stderr already is the journal stream (then the line would be logged
// twice). Without a journal (a terminal, a container, --dry-run on a laptop) stderr is all there is.
type events struct {
	user    string
	journal bool
	stderr  io.Writer // nil when stderr is the journal stream
	mu      sync.Mutex
	// sink, when set, gets every event as the value it was emitted as, before it is written:
	// a test compares what a handler reported, not how the line is printed.
	sink func(event)
}

func newEvents(user string, stderr io.Writer, useJournal bool) *events {
	e := &events{user: user, journal: useJournal && journal.Enabled(), stderr: stderr}
	if f, ok := stderr.(*os.File); ok && f == os.Stderr && e.journal {
		if isStream, _ := journal.StderrIsJournalStream(); isStream {
			e.stderr = nil
		}
	}
	return e
}

// emit reports one event. It never fails the caller: losing a log line must not stop a server.
// URL-shaped words lose their credentials first (redactURLs): an error from the Vault client
// quotes VAULT_ADDR with its user name, a victim's command line may carry a signed URL.
func (e *events) emit(x event) {
	if e.sink != nil {
		e.sink(x)
	}
	k, ok := kindOf(x)
	msg, f := x.message(), journalFields(x)
	if !ok {
		k, _ = kindOf(InternalErrorEvent{})
		msg = fmt.Sprintf("event %T is not in eventTable: %s", x, x.message())
	}
	e.write(k, msg, f)
}

func (e *events) write(k eventKind, msg string, f fields) {
	msg = redactURLs(msg)
	shown := make(fields, len(f))
	for name, v := range f {
		shown[name] = redactURLs(v)
	}
	f = shown
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.journal {
		vars := map[string]string{
			"SYSLOG_IDENTIFIER": identifier,
			"MESSAGE_ID":        k.ID,
			"T3_EVENT":          k.Name,
			"T3_USER":           e.user,
		}
		for name, v := range f {
			vars[name] = v
		}
		if err := journal.Send(msg, k.Priority, vars); err != nil && e.stderr != nil {
			fmt.Fprintf(e.stderr, "%s: journald: %v\n", identifier, err)
		}
	}
	if e.stderr != nil {
		fmt.Fprintln(e.stderr, formatLine(k, msg, f))
	}
}

// journalFields are x's journald fields, read off its struct tags (see event).
func journalFields(x event) fields {
	f := fields{}
	addFields(f, reflect.ValueOf(x))
	return f
}

var timeType = reflect.TypeFor[time.Time]()

func addFields(f fields, v reflect.Value) {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return // an untagged field that is no struct of fields: TestEventTypesAreWellFormed says so
	}
	t := v.Type()
	for i := range t.NumField() {
		sf, fv := t.Field(i), v.Field(i)
		tag, tagged := sf.Tag.Lookup("journal")
		name, opt, _ := strings.Cut(tag, ",")
		switch {
		case tag == "-":
			continue
		case !tagged:
			addFields(f, fv) // a struct of fields shared by kinds (TestEventTypesAreWellFormed)
			continue
		case strings.Contains(name, "="):
			n, constant, _ := strings.Cut(name, "=")
			f[n] = constant
			continue
		}
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				continue
			}
			fv = fv.Elem()
		}
		if opt == "omitempty" && fv.IsZero() {
			continue
		}
		f[name] = fieldText(fv)
	}
}

// fieldText is a field's journald value: what the call sites used to write by hand.
func fieldText(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case float64:
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
	return fmt.Sprint(v.Interface())
}

var levelNames = map[journal.Priority]string{
	journal.PriEmerg: "emerg", journal.PriAlert: "alert", journal.PriCrit: "crit", journal.PriErr: "error",
	journal.PriWarning: "warning", journal.PriNotice: "notice", journal.PriInfo: "info", journal.PriDebug: "debug",
}

// formatLine is the stderr form: "t3-supervise: warning credential_fallback: message (K=V ...)".
func formatLine(k eventKind, msg string, f fields) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s %s: %s", identifier, levelNames[k.Priority], k.Name, msg)
	if len(f) > 0 {
		names := make([]string, 0, len(f))
		for n := range f {
			names = append(names, n)
		}
		sort.Strings(names)
		b.WriteString(" (")
		for i, n := range names {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s=%s", n, f[n])
		}
		b.WriteByte(')')
	}
	return b.String()
}

// The event types, one per row of eventTable, in its order. The message methods keep the
// wording of the catalog's "What to do" in mind: they say what happened and what follows.

// StartingEvent: the plan is made; t3 is about to start.
type StartingEvent struct {
	Argv    []string `journal:"T3_ARGV"`
	Version string   `journal:"T3_VERSION"`
	User    string   `journal:"-"`
}

func (e StartingEvent) message() string {
	return fmt.Sprintf("t3-supervise %s starting %s for %s", e.Version, e.Argv[0], e.User)
}

// ConfigInvalidEvent: a setting that cannot work; nothing was started.
type ConfigInvalidEvent struct {
	Err error `journal:"-"`
}

func (e ConfigInvalidEvent) message() string { return fmt.Sprint(e.Err) }

// TokenInfo are the fields of the start's credential decision, shared by its four outcomes.
type TokenInfo struct {
	VaultPath    string    `journal:"T3_VAULT_PATH"`
	TokenSource  string    `journal:"T3_TOKEN_SOURCE,omitempty"`
	KVVersion    int       `journal:"T3_KV_VERSION,omitempty"`
	Fingerprint  string    `journal:"T3_TOKEN_FINGERPRINT,omitempty"`
	ExpiresAt    time.Time `journal:"T3_TOKEN_EXPIRES_AT,omitempty"`
	ExpirySource string    `journal:"T3_TOKEN_EXPIRY_SOURCE,omitempty"`
}

type CredFoundEvent struct {
	TokenInfo
}

func (e CredFoundEvent) message() string {
	return fmt.Sprintf("token found at %s (version %d)", e.VaultPath, e.KVVersion)
}

// CredOptOutEvent: no token for the user, at the start (Field: the secret's field name) or, in
// a running supervisor, confirmed by a second read (FirstSaid, Policy).
type CredOptOutEvent struct {
	TokenInfo
	Outcome   string `journal:"-"`
	Field     string `journal:"-"`
	FirstSaid string `journal:"-"`
	Policy    string `journal:"-"`
}

func (e CredOptOutEvent) message() string {
	if e.FirstSaid != "" {
		return fmt.Sprintf("the token at %s is gone (%s; a second read confirmed the first, which said %s); %s",
			e.VaultPath, e.Outcome, e.FirstSaid, e.Policy)
	}
	return fmt.Sprintf("no %s at %s (%s): starting t3 on the normal credential flow", e.Field, e.VaultPath, e.Outcome)
}

type CredDeletedEvent struct {
	TokenInfo
	Outcome string `journal:"-"`
}

func (e CredDeletedEvent) message() string {
	return fmt.Sprintf("the latest version of %s is %s: starting t3 on the normal credential flow", e.VaultPath, e.Outcome)
}

type CredFallbackEvent struct {
	TokenInfo
	Err     error  `journal:"-"`
	EnvFile string `journal:"-"`
}

func (e CredFallbackEvent) message() string {
	return fmt.Sprintf("Vault failed (%v); using the last materialized token from %s", e.Err, e.EnvFile)
}

// CredFailedEvent: no token and no fallback; Note says why (failureNote).
type CredFailedEvent struct {
	VaultPath string `journal:"T3_VAULT_PATH"`
	ExitCode  int    `journal:"T3_EXIT_CODE"`
	Note      string `journal:"-"`
}

func (e CredFailedEvent) message() string { return e.Note }

type InheritedDroppedEvent struct {
	Fingerprint string `journal:"T3_TOKEN_FINGERPRINT"`
	Path        string `journal:"-"` // the user's own Vault path
}

func (e InheritedDroppedEvent) message() string {
	return fmt.Sprintf("an inherited %s that did not come from %s was dropped", tokenVar, e.Path)
}

type OverrideDroppedEvent struct {
	Name        string `journal:"T3_ENV_NAME"`
	Fingerprint string `journal:"T3_TOKEN_FINGERPRINT,omitempty"` // none for an empty value
}

func (e OverrideDroppedEvent) message() string {
	return fmt.Sprintf("%s was dropped: claude would use it instead of the user's own token in %s", e.Name, tokenVar)
}

type EnvFileWrittenEvent struct {
	EnvFile     string `journal:"T3_ENV_FILE"`
	Fingerprint string `journal:"T3_TOKEN_FINGERPRINT"`
}

func (e EnvFileWrittenEvent) message() string {
	return fmt.Sprintf("token materialized at %s", e.EnvFile)
}

// EnvFileRemovedEvent: at the start, or (Running) after a confirmed opt-out while t3 runs.
type EnvFileRemovedEvent struct {
	EnvFile string `journal:"T3_ENV_FILE"`
	Running bool   `journal:"-"`
}

func (e EnvFileRemovedEvent) message() string {
	if e.Running {
		return fmt.Sprintf("removed %s: the user no longer has a token in Vault", e.EnvFile)
	}
	return fmt.Sprintf("removed %s: the user has no token in Vault", e.EnvFile)
}

type EnvFileFailedEvent struct {
	EnvFile string `journal:"T3_ENV_FILE"`
	Err     error  `journal:"-"`
}

func (e EnvFileFailedEvent) message() string { return fmt.Sprint(e.Err) }

type VaultRenewedEvent struct {
	TTL time.Duration `journal:"T3_VAULT_TTL"`
}

func (e VaultRenewedEvent) message() string { return fmt.Sprintf("Vault token renewed, ttl %v", e.TTL) }

type VaultRenewFailedEvent struct {
	Err error `journal:"-"`
}

func (e VaultRenewFailedEvent) message() string {
	return fmt.Sprintf("renewing the Vault token: %v", e.Err)
}

type ChildStartedEvent struct {
	PID         int    `journal:"T3_PID"`
	TokenSource string `journal:"T3_TOKEN_SOURCE"`
	Program     string `journal:"-"`
}

func (e ChildStartedEvent) message() string {
	return fmt.Sprintf("%s started as pid %d", e.Program, e.PID)
}

type ExecFailedEvent struct {
	ExitCode int   `journal:"T3_EXIT_CODE"`
	Err      error `journal:"-"`
}

func (e ExecFailedEvent) message() string { return fmt.Sprint(e.Err) }

// ExitInfo is how t3 ended: its exit status, and the signal or the exit code (exitOf). Stopped
// before t3 was started, only the signal that stopped the start-up is known.
type ExitInfo struct {
	PID    int            `journal:"T3_PID,omitempty"`
	Status *int           `journal:"T3_EXIT_STATUS"`
	Signal string         `journal:"T3_SIGNAL,omitempty"`
	Code   *int           `journal:"T3_EXIT_CODE"`
	Exit   supervise.Exit `journal:"-"`
}

func exitOf(pid int, e supervise.Exit) ExitInfo {
	status := e.Status()
	x := ExitInfo{PID: pid, Status: &status, Exit: e}
	if e.Signal != 0 {
		x.Signal = sigName(e.Signal)
	} else {
		code := e.Code
		x.Code = &code
	}
	return x
}

type ChildExitedEvent struct {
	ExitInfo
	SupervisorExit int    `journal:"T3_SUPERVISOR_EXIT_STATUS"`
	Program        string `journal:"-"`
}

func (e ChildExitedEvent) message() string {
	return fmt.Sprintf("%s (pid %d) %v without being asked to: everything it left is killed, exit %d for systemd to restart the unit",
		e.Program, e.PID, e.Exit, e.SupervisorExit)
}

// SignalEvent: SIGHUP, a re-read of the token.
type SignalEvent struct {
	Signal string `journal:"T3_SIGNAL"`
	PID    int    `journal:"T3_PID"`
}

func (e SignalEvent) message() string {
	return fmt.Sprintf("%s: re-reading the token (t3, pid %d, is not signalled)", e.Signal, e.PID)
}

type StoppingEvent struct {
	Signal  string        `journal:"T3_SIGNAL"`
	PID     int           `journal:"T3_PID"`
	Timeout time.Duration `journal:"-"`
}

func (e StoppingEvent) message() string {
	return fmt.Sprintf("%s received: SIGTERM to pid %d, SIGKILL to everything left after %v", e.Signal, e.PID, e.Timeout)
}

type StopEscalatedEvent struct {
	PID     int           `journal:"T3_PID"`
	Timeout time.Duration `journal:"-"`
}

func (e StopEscalatedEvent) message() string {
	return fmt.Sprintf("pid %d did not exit within %v; killed everything", e.PID, e.Timeout)
}

// StoppedEvent: t3 stopped in Took; BeforeStart: a signal ended the start-up before t3 ran
// (then only ExitInfo.Signal is set); Unresponsive: stopped for not answering its probes.
type StoppedEvent struct {
	ExitInfo
	Took         time.Duration `journal:"-"`
	BeforeStart  bool          `journal:"-"`
	Unresponsive bool          `journal:"-"`
}

func (e StoppedEvent) message() string {
	switch {
	case e.BeforeStart:
		return fmt.Sprintf("%s during start-up, before t3 was started: nothing to stop", e.Signal)
	case e.Unresponsive:
		return fmt.Sprintf("stopped the unresponsive server in %v: %v", e.Took.Round(1e6), e.Exit)
	}
	return fmt.Sprintf("stopped in %v: %v", e.Took.Round(1e6), e.Exit)
}

type InternalErrorEvent struct {
	ExitCode int   `journal:"T3_EXIT_CODE,omitempty"` // when the supervisor exits for it
	Err      error `journal:"-"`
}

func (e InternalErrorEvent) message() string { return fmt.Sprint(e.Err) }

type CgroupReadyEvent struct {
	Cgroup     string      `journal:"T3_CGROUP"`
	MemoryMax  cgroup.Size `journal:"T3_MEMORY_MAX"`
	MemoryHigh cgroup.Size `journal:"T3_MEMORY_HIGH"`
}

func (e CgroupReadyEvent) message() string {
	return fmt.Sprintf("cgroup subtree ready: workload memory.max %s, agents memory.high %s, swap 0", e.MemoryMax, e.MemoryHigh)
}

type CgroupFailedEvent struct {
	Cgroup   string `journal:"T3_CGROUP,omitempty"`
	ExitCode int    `journal:"T3_EXIT_CODE,omitempty"`
	Err      error  `journal:"-"`
}

func (e CgroupFailedEvent) message() string { return fmt.Sprint(e.Err) }

type CgroupWarningEvent struct {
	Cgroup  string `journal:"T3_CGROUP,omitempty"`
	ShimDir string `journal:"T3_SHIM_DIR,omitempty"`
	Err     error  `journal:"-"`
}

func (e CgroupWarningEvent) message() string { return fmt.Sprint(e.Err) }

type AgentPlacedEvent struct {
	PID  int    `journal:"T3_PID"`
	Leaf string `journal:"T3_CGROUP"`
	Via  string `journal:"T3_VIA"`
	Comm string `journal:"T3_COMM"`
}

func (e AgentPlacedEvent) message() string {
	return fmt.Sprintf("agent %s (pid %d) placed in agents/%s by the %s", e.Comm, e.PID, e.Leaf, e.Via)
}

type AgentLeafRemovedEvent struct {
	Leaf string `journal:"T3_CGROUP"`
}

func (e AgentLeafRemovedEvent) message() string {
	return fmt.Sprintf("agent leaf agents/%s emptied and removed", e.Leaf)
}

// Victim is the process a kill ended, as the watch last sampled it (victimOf); its leaf is the
// kind's own T3_CGROUP.
type Victim struct {
	PID       int    `journal:"T3_PID"`
	VictimPID int    `journal:"T3_VICTIM_PID"`
	Comm      string `journal:"T3_VICTIM_COMM"`
	Cmdline   string `journal:"T3_VICTIM_CMDLINE"`
	RSS       uint64 `journal:"T3_VICTIM_RSS"`
}

func victimOf(v cgroup.Victim) Victim {
	return Victim{PID: v.PID, VictimPID: v.PID, Comm: v.Comm, Cmdline: v.Cmdline, RSS: v.RSS}
}

// OOMKillEvent: the kernel's OOM killer ended a process. Victim is nil when it lived less than
// a sample (only memory.events' counter moved; Leaf then is the leaf, if known).
type OOMKillEvent struct {
	_        struct{} `journal:"T3_KILLER=kernel"`
	Count    uint64   `journal:"T3_OOM_KILL_COUNT"`
	SeenUsec int64    `journal:"T3_SEEN_MONOTONIC_USEC"`
	// HeldUsec: the victim was found by a look after the one that read the moved counter, this
	// long after it (the kernel counts the kill before it signals the victim).
	HeldUsec int64  `journal:"T3_HELD_USEC,omitempty"`
	Leaf     string `journal:"T3_CGROUP,omitempty"`
	Victim   *Victim
	Server   bool `journal:"-"` // the victim was t3 serve itself
}

func (e OOMKillEvent) message() string {
	if e.Victim == nil {
		where := "leaf unknown"
		if e.Leaf != "" {
			where = "in " + e.Leaf
		}
		return fmt.Sprintf("the kernel OOM-killed a process in the workload that lived less than a sample (%s)", where)
	}
	// The server's own death is not survivable from inside: its agents are killed with it and
	// the supervisor exits for systemd to restart the unit (child_exited follows).
	after := "the server keeps running"
	if e.Server {
		after = "that was the server itself: its agents are stopped and the supervisor exits for systemd to restart the unit"
	}
	return fmt.Sprintf("the kernel OOM-killed %s (pid %d, %s resident) in %s; %s", e.Victim.Comm, e.Victim.PID, mib(e.Victim.RSS), e.Leaf, after)
}

type PressureKillEvent struct {
	_      struct{} `journal:"T3_KILLER=t3-supervise"`
	Signal string   `journal:"T3_SIGNAL"`
	Stall  float64  `journal:"T3_STALL"` // share of the window stalled, 0..1
	Leaf   string   `journal:"T3_CGROUP"`
	Victim
	Window time.Duration `journal:"-"`
}

func (e PressureKillEvent) message() string {
	return fmt.Sprintf("killed %s (pid %d, %s resident, agents/%s) with %s: agents over memory.high and stalled %.0f%% for %v",
		e.Comm, e.PID, mib(e.RSS), e.Leaf, e.Signal, 100*e.Stall, e.Window)
}

type ServerReadyEvent struct {
	PID      int           `journal:"T3_PID"`
	Startup  time.Duration `journal:"T3_STARTUP,omitempty"`   // the first answer only
	ProbeURL string        `journal:"T3_PROBE_URL,omitempty"` // the first answer only
}

func (e ServerReadyEvent) message() string {
	if e.ProbeURL == "" {
		return fmt.Sprintf("t3 serve (pid %d) answers again", e.PID)
	}
	return fmt.Sprintf("t3 serve (pid %d) answers GET %s after %v", e.PID, e.ProbeURL, e.Startup)
}

type ProbeFailedEvent struct {
	PID int   `journal:"T3_PID"`
	Err error `journal:"-"`
}

func (e ProbeFailedEvent) message() string {
	return fmt.Sprintf("t3 serve (pid %d) did not answer: %v", e.PID, e.Err)
}

// UnresponsiveEvent: t3 never answered within --ready-timeout (Waited), or stopped answering
// after LastGood (then Memory says how the workload stood).
type UnresponsiveEvent struct {
	PID      int           `journal:"T3_PID"`
	Failures int           `journal:"T3_PROBE_FAILURES"`
	LastGood *time.Time    `journal:"T3_LAST_GOOD_PROBE"`
	ExitCode int           `journal:"T3_EXIT_CODE"`
	Last     error         `journal:"-"`
	Waited   time.Duration `journal:"-"`
	Memory   string        `journal:"-"`
}

func (e UnresponsiveEvent) message() string {
	if e.LastGood == nil {
		return fmt.Sprintf("t3 serve (pid %d) did not answer within --ready-timeout %v (%d probes failed, last: %v); stopping it",
			e.PID, e.Waited, e.Failures, e.Last)
	}
	return fmt.Sprintf("t3 serve (pid %d) answered no probe since %s (%d failed, last: %v; %s); stopping it for systemd to restart",
		e.PID, e.LastGood.Format(time.RFC3339), e.Failures, e.Last, e.Memory)
}

type CredRotatedEvent struct {
	VaultPath     string `journal:"T3_VAULT_PATH"`
	KVVersion     int    `journal:"T3_KV_VERSION"`
	VersionBefore int    `journal:"T3_KV_VERSION_BEFORE"`
	Fingerprint   string `journal:"T3_TOKEN_FINGERPRINT"`
	EnvFile       string `journal:"-"`
	Policy        string `journal:"-"`
}

func (e CredRotatedEvent) message() string {
	return fmt.Sprintf("the token at %s changed (version %d -> %d); %s written; %s", e.VaultPath, e.VersionBefore, e.KVVersion, e.EnvFile, e.Policy)
}

// RefreshFailedEvent: a re-read failed (Err, the next in Next), or a "gone" (Gone) was not
// confirmed After later (Then: what the confirming read said).
type RefreshFailedEvent struct {
	VaultPath string        `journal:"T3_VAULT_PATH"`
	Err       error         `journal:"-"`
	Next      time.Duration `journal:"-"`
	Gone      string        `journal:"-"`
	Then      string        `journal:"-"`
	After     time.Duration `journal:"-"`
	EnvFile   string        `journal:"-"`
}

func (e RefreshFailedEvent) message() string {
	if e.Err != nil {
		return fmt.Sprintf("re-reading the token failed, nothing changed, retrying with backoff (next in %v): %v", e.Next.Round(time.Second), e.Err)
	}
	return fmt.Sprintf("a re-read said the token at %s is gone (%s), the next one %v later did not confirm it (%s): nothing changed, t3 keeps its token and %s stays",
		e.VaultPath, e.Gone, e.After, e.Then, e.EnvFile)
}

type RefreshRecoveredEvent struct {
	VaultPath string `journal:"T3_VAULT_PATH"`
	Failures  int    `journal:"-"`
}

func (e RefreshRecoveredEvent) message() string {
	return fmt.Sprintf("Vault answers again after %d failed re-reads", e.Failures)
}

type RotationRestartEvent struct {
	PID      int `journal:"T3_PID"`
	ExitCode int `journal:"T3_EXIT_CODE"`
}

func (e RotationRestartEvent) message() string {
	return fmt.Sprintf("stopping t3 (pid %d) so that systemd restarts it with the new token", e.PID)
}

type PressureOffEvent struct {
	Err error `journal:"-"`
}

func (e PressureOffEvent) message() string { return fmt.Sprint(e.Err) }

// PressureModeEvent: how the watch learns of memory pressure (a PSI trigger, or sampling) and why.
type PressureModeEvent struct {
	Mode   string `journal:"T3_PSI_MODE"`
	Reason string `journal:"T3_PSI_MODE_REASON"`
}

func (e PressureModeEvent) message() string {
	if e.Mode == cgroup.PSITrigger {
		return fmt.Sprintf("memory pressure wakes the watch: PSI trigger %s", e.Reason)
	}
	return fmt.Sprintf("the watch samples memory pressure every --sample-interval: %s", e.Reason)
}

// MemoryReleasedEvent: process_mrelease(2) freed a killed process's memory right after the kill.
type MemoryReleasedEvent struct {
	After string        `journal:"T3_AFTER"` // pressure_kill or oom_kill
	Took  time.Duration `journal:"T3_RELEASE_TOOK"`
	Leaf  string        `journal:"T3_CGROUP"`
	Victim
}

func (e MemoryReleasedEvent) message() string {
	return fmt.Sprintf("released the memory of %s (pid %d, %s resident, agents/%s) after its %s in %v",
		e.Comm, e.PID, mib(e.RSS), e.Leaf, e.After, e.Took.Round(time.Microsecond))
}

type StrayKilledEvent struct {
	_      struct{} `journal:"T3_KILLER=t3-supervise"`
	_      struct{} `journal:"T3_SIGNAL=SIGKILL"`
	Cgroup string   `journal:"T3_CGROUP"` // where it was, outside the workload
	Victim
}

func (e StrayKilledEvent) message() string {
	return fmt.Sprintf("killed %s (pid %d, %s resident): it was in %s, outside the workload and its limits (a process of the user's moved it there)",
		e.Comm, e.PID, mib(e.RSS), e.Cgroup)
}

type ServerFoundEvent struct {
	PID         int    `journal:"T3_PID"`
	Comm        string `journal:"T3_COMM"`
	WrapperPID  int    `journal:"T3_WRAPPER_PID"`
	WrapperComm string `journal:"T3_WRAPPER_COMM"`
	Port        int    `journal:"-"`
}

func (e ServerFoundEvent) message() string {
	return fmt.Sprintf("t3's direct child %s (pid %d) does not listen on port %d itself; %s (pid %d) does: it is the server and stays in server/ with the processes between them",
		e.WrapperComm, e.WrapperPID, e.Port, e.Comm, e.PID)
}

type LimitRestoredEvent struct {
	File     string `journal:"T3_CGROUP_FILE"`
	Found    string `journal:"T3_FOUND"`
	Restored string `journal:"T3_RESTORED"`
}

func (e LimitRestoredEvent) message() string {
	return fmt.Sprintf("%s read %q, not the planned %q (a process of the user's wrote it): written back", e.File, e.Found, e.Restored)
}

// ExpiryInfo are the fields of a notice about the token's expiry; Left is the time to it
// (negative once it has passed).
type ExpiryInfo struct {
	VaultPath   string        `journal:"T3_VAULT_PATH"`
	ExpiresAt   time.Time     `journal:"T3_TOKEN_EXPIRES_AT"`
	Source      string        `journal:"T3_TOKEN_EXPIRY_SOURCE"`
	DaysLeft    int           `journal:"T3_TOKEN_DAYS_LEFT"`
	Fingerprint string        `journal:"T3_TOKEN_FINGERPRINT"`
	KVVersion   int           `journal:"T3_KV_VERSION,omitempty"`
	Left        time.Duration `journal:"-"`
}

type CredExpiringEvent struct {
	ExpiryInfo
	ThresholdDays int `journal:"T3_EXPIRY_THRESHOLD_DAYS"`
}

func (e CredExpiringEvent) message() string {
	return fmt.Sprintf("the token at %s expires %s, in %s (from %s): put a new one there before then",
		e.VaultPath, e.ExpiresAt.Format(time.RFC3339), left(e.Left), e.Source)
}

type CredExpiredEvent struct {
	ExpiryInfo
}

func (e CredExpiredEvent) message() string {
	return fmt.Sprintf("the token at %s expired %s (%s, from %s): agents' requests fail until a new token is put there",
		e.VaultPath, e.ExpiresAt.Format(time.RFC3339), ago(-e.Left), e.Source)
}

type CredExpiryInvalidEvent struct {
	VaultPath string `journal:"T3_VAULT_PATH"`
	KVVersion int    `journal:"T3_KV_VERSION"`
	Err       error  `journal:"-"`
}

func (e CredExpiryInvalidEvent) message() string { return fmt.Sprint(e.Err) }

type BinaryReplacedEvent struct {
	Binary         string `journal:"T3_BINARY"`
	RunningVersion string `journal:"T3_RUNNING_VERSION"`
	RunningInode   uint64 `journal:"T3_RUNNING_INODE"`
	InstalledInode uint64 `journal:"T3_INSTALLED_INODE"`
	Plan           string `journal:"-"` // when the move happens
}

func (e BinaryReplacedEvent) message() string {
	return fmt.Sprintf("%s was replaced (inode %d, this one runs %d, version %s): %s", e.Binary, e.InstalledInode, e.RunningInode, e.RunningVersion, e.Plan)
}

type BinaryRemovedEvent struct {
	Binary         string `journal:"T3_BINARY"`
	RunningVersion string `journal:"T3_RUNNING_VERSION"`
	Err            error  `journal:"-"`
}

func (e BinaryRemovedEvent) message() string {
	return fmt.Sprintf("%s is gone (%v): the supervisor keeps running this binary and does not restart for it", e.Binary, e.Err)
}

type UpgradeRequestedEvent struct {
	Signal string        `journal:"T3_SIGNAL"`
	Binary string        `journal:"T3_BINARY"`
	Stale  bool          `journal:"T3_BINARY_STALE"`
	Onto   string        `journal:"-"`
	Idle   time.Duration `journal:"-"`
}

func (e UpgradeRequestedEvent) message() string {
	return fmt.Sprintf("%s (systemctl reload): restarting onto %s once the agents have been idle for %v (by CPU time, --busy-cpu); never while agents work (systemctl restart moves at once)",
		e.Signal, e.Onto, e.Idle)
}

// UpgradePendingEvent: the move waits for the agents (Why), or for dpkg to configure the
// package (DpkgState).
type UpgradePendingEvent struct {
	Binary    string `journal:"T3_BINARY"`
	Busy      bool   `journal:"T3_BUSY"`
	DpkgState string `journal:"T3_DPKG_STATE,omitempty"`
	Why       string `journal:"-"`
}

func (e UpgradePendingEvent) message() string {
	if e.DpkgState != "" {
		return fmt.Sprintf("the move to %s waits: dpkg has %s %s, not configured yet (its postinst reloads systemd)", e.Binary, packageName, e.DpkgState)
	}
	return fmt.Sprintf("the move to %s waits: %s; t3 and its agents keep running", e.Binary, e.Why)
}

type UpgradeRefusedEvent struct {
	Binary         string `journal:"T3_BINARY"`
	RunningVersion string `journal:"-"`
	Err            error  `journal:"-"`
}

func (e UpgradeRefusedEvent) message() string {
	return fmt.Sprintf("not restarting into %s: %v; the supervisor keeps running this binary (%s)", e.Binary, e.Err, e.RunningVersion)
}

type UpgradeRestartEvent struct {
	PID              int           `journal:"T3_PID"`
	ExitCode         int           `journal:"T3_EXIT_CODE"`
	Binary           string        `journal:"T3_BINARY"`
	RunningVersion   string        `journal:"T3_RUNNING_VERSION"`
	InstalledVersion string        `journal:"T3_INSTALLED_VERSION"`
	Stale            bool          `journal:"T3_BINARY_STALE"`
	Requested        bool          `journal:"T3_REQUESTED"`
	IdleFor          time.Duration `journal:"T3_IDLE_FOR"`
}

func (e UpgradeRestartEvent) message() string {
	return fmt.Sprintf("stopping t3 (pid %d; the agents have been idle for %v) so that systemd starts the unit again on %s (%s, this is %s)",
		e.PID, e.IdleFor, e.Binary, e.InstalledVersion, e.RunningVersion)
}
