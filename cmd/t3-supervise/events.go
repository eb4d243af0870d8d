//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/journal"
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

// The event kinds. IDs are fixed forever once released: operators filter on them
// (journalctl MESSAGE_ID=...), and the catalog explains each one.
var (
	evStarting         = eventKind{"starting", "923fd24016374604a3cc81ed4e5b0f01", journal.PriInfo}
	evConfigInvalid    = eventKind{"config_invalid", "34546b6027d448cf8f9e65d6d778bf6f", journal.PriErr}
	evCredFound        = eventKind{"credential_found", "30ec0ca804ee421cba7965b3373bd0b9", journal.PriInfo}
	evCredOptOut       = eventKind{"credential_opt_out", "58f0cac629434646baa187d22f1b5533", journal.PriNotice}
	evCredDeleted      = eventKind{"credential_deleted", "375c4ac028704f78b2a90e482ba255d0", journal.PriWarning}
	evCredFallback     = eventKind{"credential_fallback", "84bd3c4ef12b469cbcc192a361fe5ab0", journal.PriWarning}
	evCredFailed       = eventKind{"credential_failed", "4bab1a2450de4101bd017618dec8d0ae", journal.PriErr}
	evInheritedDropped = eventKind{"inherited_token_dropped", "7e6b8849461f4b72ac59d92c71a1e9da", journal.PriWarning}
	evOverrideDropped  = eventKind{"credential_override_dropped", "e827ae25852b4d07bf09c4c6e59bf458", journal.PriWarning}
	evEnvFileWritten   = eventKind{"env_file_written", "d0d45b43cc8a4d53b4cc9302dc9e7892", journal.PriInfo}
	evEnvFileRemoved   = eventKind{"env_file_removed", "af8b53ef9d4b45ef8dec702b192bf296", journal.PriNotice}
	evEnvFileFailed    = eventKind{"env_file_failed", "a2783bce625a40888e0b2f7259aefcb4", journal.PriErr}
	evVaultRenewed     = eventKind{"vault_token_renewed", "335a44db9c2a47e8a7884cc2b670a60c", journal.PriDebug}
	evVaultRenewFailed = eventKind{"vault_token_renew_failed", "5f90fa5af3784dc6bdfbcfb7d4ad08f7", journal.PriWarning}
	evChildStarted     = eventKind{"child_started", "c778bf1a5a714c3d82a52f5121afd2f1", journal.PriInfo}
	evExecFailed       = eventKind{"exec_failed", "da7da9a40a194f68958791e7f6c4fff4", journal.PriErr}
	evChildExited      = eventKind{"child_exited", "2e95e00971d240ad809b86ec1fa2f71c", journal.PriNotice}
	evSignal           = eventKind{"signal", "dfd14835a45b4a6faf6e9a82a63907e9", journal.PriInfo}
	evStopping         = eventKind{"stopping", "c8576c2f1c8241d08d578dbc12e29e32", journal.PriInfo}
	evStopEscalated    = eventKind{"stop_escalated", "98d29d287c5b430d95c6c13655109ce3", journal.PriWarning}
	evStopped          = eventKind{"stopped", "ec86a0dc865a4423917a9620eff90411", journal.PriInfo}
	evInternal         = eventKind{"internal_error", "e052523447ab4fa8a833dbb3e68dc67d", journal.PriErr}
	evCgroupReady      = eventKind{"cgroup_ready", "39859b19c8274bf7842673fb87cb49d3", journal.PriInfo}
	evCgroupFailed     = eventKind{"cgroup_failed", "1135c32098b04d6dad932b3c3e3a1c12", journal.PriErr}
	evCgroupWarning    = eventKind{"cgroup_warning", "46c60ceb6386403da668ec87379e7e5a", journal.PriWarning}
	evAgentPlaced      = eventKind{"agent_placed", "ec5c5cb2171b4764828118192589e3de", journal.PriInfo}
	evAgentLeafRemoved = eventKind{"agent_leaf_removed", "e80f8c35871a47f495b7eca604241bdd", journal.PriDebug}
	evOOMKill          = eventKind{"oom_kill", "e910424a650240bcb1526a7f07752293", journal.PriWarning}
	evPressureKill     = eventKind{"pressure_kill", "35ffbc03cdc348c499129f839d87e994", journal.PriWarning}
	evServerReady      = eventKind{"server_ready", "5a0f4f0666a14194af1c0095776305a5", journal.PriInfo}
	evProbeFailed      = eventKind{"server_probe_failed", "67cd16ecdb7944b4a8d7f99335f87042", journal.PriWarning}
	evUnresponsive     = eventKind{"server_unresponsive", "5f77fa22ab92479cb1e9109aa8850fab", journal.PriErr}
	evCredRotated      = eventKind{"credential_rotated", "a7b4127aaef74743af654c6b4b45146f", journal.PriNotice}
	evRefreshFailed    = eventKind{"credential_refresh_failed", "39ce5bd2b8c446ed8e9c57efc87e7261", journal.PriWarning}
	evRefreshRecovered = eventKind{"credential_refresh_recovered", "61f41ab3f929417eb16e4d488bfad086", journal.PriInfo}
	evRotationRestart  = eventKind{"rotation_restart", "82c3d65495b34a079f5a3365f2bfcc56", journal.PriNotice}
	evPressureOff      = eventKind{"pressure_kill_unavailable", "737af932ca836b02f573f7c576bbfa89", journal.PriWarning}
	evStrayKilled      = eventKind{"stray_killed", "2e74c1ab94b40e279873fcae3993f160", journal.PriWarning}
	evServerFound      = eventKind{"server_behind_wrapper", "20da3b13179b827540d3afe37ca11998", journal.PriNotice}
	evLimitRestored    = eventKind{"limit_restored", "0d4dfbd2cd43449f8e72462619008747", journal.PriWarning}
	// The token's expiry horizon (expiry.go): a warning ahead of time, an error once it has
	// passed (every agent's request then fails with 401), and a warning for an expires_at that
	// cannot be used.
	evCredExpiring      = eventKind{"credential_expiring", "75a5e038b07641b993ab464904ba032e", journal.PriWarning}
	evCredExpired       = eventKind{"credential_expired", "e2c61b7ca0e349fa9938ec3c258efc90", journal.PriErr}
	evCredExpiryInvalid = eventKind{"credential_expiry_invalid", "b91fa5d6dba649ef824ba955ceb47f25", journal.PriWarning}
	evBinaryReplaced    = eventKind{"binary_replaced", "7fcb966e74074e2c8ca9f7dd394f3cf9", journal.PriNotice}
	evBinaryRemoved     = eventKind{"binary_removed", "bfc1787baee24a93b127690e1be9cdc2", journal.PriWarning}
	evUpgradeRequested  = eventKind{"upgrade_requested", "6e6370c1d00f43cf9f04199e506de8b4", journal.PriNotice}
	evUpgradePending    = eventKind{"upgrade_pending", "c4225479d0eb4063ba00f473d91fdcf4", journal.PriInfo}
	evUpgradeRefused    = eventKind{"upgrade_refused", "cfcb988a638a4ce98dd3e15202cfa785", journal.PriErr}
	evUpgradeRestart    = eventKind{"upgrade_restart", "da05b75173c44ebdab2c5b19f9a5e745", journal.PriNotice}
)

// eventKinds lists every kind, for the catalog test and the --help text.
var eventKinds = []eventKind{
	evStarting, evConfigInvalid, evCredFound, evCredOptOut, evCredDeleted, evCredFallback,
	evCredFailed, evInheritedDropped, evOverrideDropped, evEnvFileWritten, evEnvFileRemoved, evEnvFileFailed,
	evVaultRenewed, evVaultRenewFailed, evChildStarted, evExecFailed, evChildExited, evSignal,
	evStopping, evStopEscalated, evStopped, evInternal, evCgroupReady, evCgroupFailed,
	evCgroupWarning, evAgentPlaced, evAgentLeafRemoved, evOOMKill, evPressureKill, evServerReady,
	evProbeFailed, evUnresponsive, evCredRotated, evRefreshFailed, evRefreshRecovered, evRotationRestart,
	evPressureOff, evStrayKilled, evServerFound, evLimitRestored,
	evCredExpiring, evCredExpired, evCredExpiryInvalid,
	evBinaryReplaced, evBinaryRemoved, evUpgradeRequested, evUpgradePending, evUpgradeRefused, evUpgradeRestart,
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
func (e *events) emit(k eventKind, f fields, format string, args ...any) {
	msg := redactURLs(fmt.Sprintf(format, args...))
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
