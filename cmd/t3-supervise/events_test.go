//go:build linux

package main

import (
	"bytes"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"t3-supervise/cgroup"
	"t3-supervise/supervise"
)

// eventTypesInSource are the package's types with a message method, read off its source: every
// type a handler could emit, whether or not anyone remembered to add it to eventTable.
func eventTypesInSource(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || fn.Name.Name != "message" {
				continue
			}
			recv := fn.Recv.List[0].Type
			if star, ok := recv.(*ast.StarExpr); ok {
				recv = star.X
			}
			names = append(names, recv.(*ast.Ident).Name)
		}
	}
	slices.Sort(names)
	return names
}

// Every event type is in the table, once, with a kind of its own; the table's kinds against
// the catalog and docs/events.md are TestCatalogCoversEveryEvent's.
func TestEventTableIsComplete(t *testing.T) {
	var inTable []string
	seen := map[reflect.Type]bool{}
	for _, row := range eventTable {
		typ := reflect.TypeOf(row.sample)
		if seen[typ] {
			t.Errorf("eventTable: %v twice", typ)
		}
		seen[typ] = true
		inTable = append(inTable, typ.Name())
		if k, ok := kindOf(row.sample); !ok || k != row.kind {
			t.Errorf("kindOf(%v) = %+v, %v; want %+v", typ, k, ok, row.kind)
		}
	}
	for _, name := range eventTypesInSource(t) {
		if !slices.Contains(inTable, name) {
			t.Errorf("%s has a message method and no row in eventTable (nor a kind, a MESSAGE_ID, a catalog entry)", name)
		}
	}
	if len(eventKinds) != len(eventTable) {
		t.Errorf("eventKinds has %d kinds, the table %d", len(eventKinds), len(eventTable))
	}
}

var journalName = regexp.MustCompile(`^T3_[A-Z0-9_]+$`)

// Every field of every event type says what it is for journald, with a name journald takes
// (systemd.journal-fields(7); T3_ is the supervisor's own prefix) and that the common fields
// do not already use; no kind names a field twice.
func TestEventTypesAreWellFormed(t *testing.T) {
	for _, row := range eventTable {
		names := map[string]bool{}
		var walk func(typ reflect.Type, path string)
		walk = func(typ reflect.Type, path string) {
			if typ.Kind() == reflect.Pointer {
				typ = typ.Elem()
			}
			for i := range typ.NumField() {
				sf := typ.Field(i)
				tag, tagged := sf.Tag.Lookup("journal")
				where := path + "." + sf.Name
				if !tagged {
					if sf.Type.Kind() != reflect.Struct && (sf.Type.Kind() != reflect.Pointer || sf.Type.Elem().Kind() != reflect.Struct) {
						t.Errorf("%s: no journal tag (a name, or \"-\" for the message only)", where)
						continue
					}
					walk(sf.Type, where)
					continue
				}
				if tag == "-" {
					continue
				}
				name, opt, _ := strings.Cut(tag, ",")
				name, _, constant := strings.Cut(name, "=")
				if !journalName.MatchString(name) || name == "T3_EVENT" || name == "T3_USER" {
					t.Errorf("%s: journal name %q", where, name)
				}
				if opt != "" && opt != "omitempty" {
					t.Errorf("%s: unknown option %q", where, opt)
				}
				if constant != (sf.Name == "_") {
					t.Errorf("%s: a constant goes on a blank field, and a blank field is a constant", where)
				}
				if names[name] {
					t.Errorf("%s: %s twice in %s", where, name, row.kind.Name)
				}
				names[name] = true
			}
		}
		walk(reflect.TypeOf(row.sample), reflect.TypeOf(row.sample).Name())
	}
}

// recorder keeps what a handler emitted, as values, and the printed lines beside them for the
// few tests about printing itself (a token never shows).
type recorder struct {
	mu   sync.Mutex
	got  []event
	text syncBuffer
}

func recordEvents(user string) (*events, *recorder) {
	r := &recorder{}
	ev := newEvents(user, &r.text, false)
	ev.sink = func(e event) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.got = append(r.got, e)
	}
	return ev, r
}

func (r *recorder) all() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// names are the kinds emitted, in order.
func (r *recorder) names() []string {
	var n []string
	for _, e := range r.all() {
		k, _ := kindOf(e)
		n = append(n, k.Name)
	}
	return n
}

// eventsOf are the emitted events of type T, in order.
func eventsOf[T event](r *recorder) []T {
	var out []T
	for _, e := range r.all() {
		if x, ok := e.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

// The typed events print as the hand-built lines did, byte for byte (each line below was the
// old emit's output for the same values); journald gets the same fields and message.
func TestEventsPrintAsBefore(t *testing.T) {
	lastGood := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	exp := time.Date(2027, 11, 6, 0, 0, 0, 0, time.UTC)
	boom := errors.New("boom http://u:p@h/x")
	v := cgroup.Victim{PID: 7, Comm: "node", Cmdline: "node x", RSS: 3 << 20, Leaf: "1-2"}
	for _, tc := range []struct {
		event event
		line  string
	}{
		{StartingEvent{Argv: []string{"/bin/t3", "serve"}, Version: "1.2", User: "alice"},
			"t3-supervise: info starting: t3-supervise 1.2 starting /bin/t3 for alice (T3_ARGV=[/bin/t3 serve] T3_VERSION=1.2)"},
		{CredFoundEvent{TokenInfo{VaultPath: "secret/a", TokenSource: "vault", KVVersion: 3, Fingerprint: "fp", ExpiresAt: exp, ExpirySource: "custom_metadata"}},
			"t3-supervise: info credential_found: token found at secret/a (version 3) (T3_KV_VERSION=3 T3_TOKEN_EXPIRES_AT=2027-11-06T00:00:00Z T3_TOKEN_EXPIRY_SOURCE=custom_metadata T3_TOKEN_FINGERPRINT=fp T3_TOKEN_SOURCE=vault T3_VAULT_PATH=secret/a)"},
		{CredOptOutEvent{TokenInfo: TokenInfo{VaultPath: "secret/a"}, Outcome: "no secret", FirstSaid: "deleted", Policy: "pol"},
			"t3-supervise: notice credential_opt_out: the token at secret/a is gone (no secret; a second read confirmed the first, which said deleted); pol (T3_VAULT_PATH=secret/a)"},
		{ChildExitedEvent{ExitInfo: exitOf(9, supervise.Exit{Signal: syscall.SIGKILL}), SupervisorExit: 137, Program: "t3"},
			"t3-supervise: notice child_exited: t3 (pid 9) killed by signal 9 (killed) without being asked to: everything it left is killed, exit 137 for systemd to restart the unit (T3_EXIT_STATUS=137 T3_PID=9 T3_SIGNAL=SIGKILL T3_SUPERVISOR_EXIT_STATUS=137)"},
		{StoppedEvent{ExitInfo: exitOf(9, supervise.Exit{Code: 0}), Took: 1234567 * time.Microsecond},
			"t3-supervise: info stopped: stopped in 1.235s: exited with code 0 (T3_EXIT_CODE=0 T3_EXIT_STATUS=0 T3_PID=9)"},
		{StoppedEvent{ExitInfo: ExitInfo{Signal: "SIGTERM"}, BeforeStart: true},
			"t3-supervise: info stopped: SIGTERM during start-up, before t3 was started: nothing to stop (T3_SIGNAL=SIGTERM)"},
		{OOMKillEvent{Count: 2, SeenUsec: 99, Leaf: "1-2"},
			"t3-supervise: warning oom_kill: the kernel OOM-killed a process in the workload that lived less than a sample (in 1-2) (T3_CGROUP=1-2 T3_KILLER=kernel T3_OOM_KILL_COUNT=2 T3_SEEN_MONOTONIC_USEC=99)"},
		{OOMKillEvent{Count: 2, SeenUsec: 99, Leaf: "1-2", Victim: &Victim{PID: 7, VictimPID: 7, Comm: "node", Cmdline: "node x", RSS: 3 << 20}},
			"t3-supervise: warning oom_kill: the kernel OOM-killed node (pid 7, 3 MiB resident) in 1-2; the server keeps running (T3_CGROUP=1-2 T3_KILLER=kernel T3_OOM_KILL_COUNT=2 T3_PID=7 T3_SEEN_MONOTONIC_USEC=99 T3_VICTIM_CMDLINE=node x T3_VICTIM_COMM=node T3_VICTIM_PID=7 T3_VICTIM_RSS=3145728)"},
		{PressureKillEvent{Signal: "SIGTERM", Stall: 0.4567, Leaf: "1-2", Victim: victimOf(v), Window: 10 * time.Second},
			"t3-supervise: warning pressure_kill: killed node (pid 7, 3 MiB resident, agents/1-2) with SIGTERM: agents over memory.high and stalled 46% for 10s (T3_CGROUP=1-2 T3_KILLER=t3-supervise T3_PID=7 T3_SIGNAL=SIGTERM T3_STALL=0.46 T3_VICTIM_CMDLINE=node x T3_VICTIM_COMM=node T3_VICTIM_PID=7 T3_VICTIM_RSS=3145728)"},
		{StrayKilledEvent{Cgroup: "1-2", Victim: victimOf(v)},
			"t3-supervise: warning stray_killed: killed node (pid 7, 3 MiB resident): it was in 1-2, outside the workload and its limits (a process of the user's moved it there) (T3_CGROUP=1-2 T3_KILLER=t3-supervise T3_PID=7 T3_SIGNAL=SIGKILL T3_VICTIM_CMDLINE=node x T3_VICTIM_COMM=node T3_VICTIM_PID=7 T3_VICTIM_RSS=3145728)"},
		{ServerReadyEvent{PID: 9, Startup: 1500 * time.Millisecond, ProbeURL: "http://127.0.0.1:1/"},
			"t3-supervise: info server_ready: t3 serve (pid 9) answers GET http://127.0.0.1:1/ after 1.5s (T3_PID=9 T3_PROBE_URL=http://127.0.0.1:1/ T3_STARTUP=1.5s)"},
		{ServerReadyEvent{PID: 9},
			"t3-supervise: info server_ready: t3 serve (pid 9) answers again (T3_PID=9)"},
		{UnresponsiveEvent{PID: 9, Failures: 3, LastGood: &lastGood, ExitCode: exitUnresponsive, Last: boom, Memory: "mem"},
			"t3-supervise: error server_unresponsive: t3 serve (pid 9) answered no probe since 2027-01-02T03:04:05Z (3 failed, last: boom http://REDACTED@h/x; mem); stopping it for systemd to restart (T3_EXIT_CODE=75 T3_LAST_GOOD_PROBE=2027-01-02T03:04:05Z T3_PID=9 T3_PROBE_FAILURES=3)"},
		{UnresponsiveEvent{PID: 9, Failures: 3, ExitCode: exitUnresponsive, Last: boom, Waited: time.Minute},
			"t3-supervise: error server_unresponsive: t3 serve (pid 9) did not answer within --ready-timeout 1m0s (3 probes failed, last: boom http://REDACTED@h/x); stopping it (T3_EXIT_CODE=75 T3_PID=9 T3_PROBE_FAILURES=3)"},
		{CredRotatedEvent{VaultPath: "secret/a", KVVersion: 2, VersionBefore: 1, Fingerprint: "fp", EnvFile: "/e", Policy: "pol"},
			"t3-supervise: notice credential_rotated: the token at secret/a changed (version 1 -> 2); /e written; pol (T3_KV_VERSION=2 T3_KV_VERSION_BEFORE=1 T3_TOKEN_FINGERPRINT=fp T3_VAULT_PATH=secret/a)"},
		{RefreshFailedEvent{VaultPath: "", Err: boom, Next: 15400 * time.Millisecond},
			"t3-supervise: warning credential_refresh_failed: re-reading the token failed, nothing changed, retrying with backoff (next in 15s): boom http://REDACTED@h/x (T3_VAULT_PATH=)"},
		{CredExpiringEvent{ExpiryInfo: ExpiryInfo{VaultPath: "secret/a", ExpiresAt: exp, Source: "created_time", DaysLeft: 4, Fingerprint: "fp", KVVersion: 4, Left: 100 * time.Hour}, ThresholdDays: 7},
			"t3-supervise: warning credential_expiring: the token at secret/a expires 2027-11-06T00:00:00Z, in 4 days (from created_time): put a new one there before then (T3_EXPIRY_THRESHOLD_DAYS=7 T3_KV_VERSION=4 T3_TOKEN_DAYS_LEFT=4 T3_TOKEN_EXPIRES_AT=2027-11-06T00:00:00Z T3_TOKEN_EXPIRY_SOURCE=created_time T3_TOKEN_FINGERPRINT=fp T3_VAULT_PATH=secret/a)"},
		{CgroupReadyEvent{Cgroup: "/sys/fs/cgroup/x", MemoryMax: cgroup.Bytes(1 << 30), MemoryHigh: cgroup.Bytes(1 << 29)},
			"t3-supervise: info cgroup_ready: cgroup subtree ready: workload memory.max 1G, agents memory.high 512M, swap 0 (T3_CGROUP=/sys/fs/cgroup/x T3_MEMORY_HIGH=512M T3_MEMORY_MAX=1G)"},
		{UpgradeRestartEvent{PID: 9, ExitCode: exitUpgrade, Binary: "/b", RunningVersion: "1", InstalledVersion: "2", Stale: true, Requested: false, IdleFor: 61 * time.Second},
			"t3-supervise: notice upgrade_restart: stopping t3 (pid 9; the agents have been idle for 1m1s) so that systemd starts the unit again on /b (2, this is 1) (T3_BINARY=/b T3_BINARY_STALE=true T3_EXIT_CODE=73 T3_IDLE_FOR=1m1s T3_INSTALLED_VERSION=2 T3_PID=9 T3_REQUESTED=false T3_RUNNING_VERSION=1)"},
		{UpgradePendingEvent{Binary: "/b", DpkgState: "unpacked"},
			"t3-supervise: info upgrade_pending: the move to /b waits: dpkg has t3-supervise unpacked, not configured yet (its postinst reloads systemd) (T3_BINARY=/b T3_BUSY=false T3_DPKG_STATE=unpacked)"},
		// "%v" of a nil error, as the old emit printed it: a message never panics.
		{CgroupWarningEvent{},
			"t3-supervise: warning cgroup_warning: <nil>"},
	} {
		var b bytes.Buffer
		newEvents("alice", &b, false).emit(tc.event)
		if got := strings.TrimSuffix(b.String(), "\n"); got != tc.line {
			t.Errorf("%T:\n got  %s\n want %s", tc.event, got, tc.line)
		}
	}
}
