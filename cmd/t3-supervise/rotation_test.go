//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"t3-supervise/cgroup"
	"t3-supervise/creds"
	"t3-supervise/supervise"
)

const fakeToken1 = "sk-ant-oat01-ROTATIONtestAAAAAAAAAAAAAAAA"
const fakeToken2 = "sk-ant-oat01-ROTATIONtestBBBBBBBBBBBBBBBB"

func testRotation(t *testing.T, policy supervise.RestartPolicy) (*rotation, *events, *recorder) {
	t.Helper()
	cfg := &config{User: "alice", EnvFile: filepath.Join(t.TempDir(), "cas", "claude-oauth.env"),
		Rotation: rotationConfig{Interval: time.Hour, Restart: policy, Idle: time.Minute}}
	p := &plan{decision: creds.Decision{Inject: creds.NewSecret(fakeToken1)}, Credential: credentialPlan{Version: 1}}
	ev, rec := recordEvents("alice")
	return newRotation(cfg, p, nil), ev, rec
}

func TestRotationWritesTheEnvFileAndFollowsThePolicy(t *testing.T) {
	r, ev, rec := testRotation(t, supervise.RestartNever)
	r.handle(ev, refreshResult{res: creds.Result{Outcome: creds.Found, Token: creds.NewSecret(fakeToken1), Version: 1}})
	if got := rec.all(); len(got) != 0 || r.pending {
		t.Fatalf("the same token counted as a rotation: %+v", got)
	}
	r.handle(ev, refreshResult{res: creds.Result{Outcome: creds.Found, Token: creds.NewSecret(fakeToken2), Version: 2, Path: "secret/x/alice"}})
	want := []event{CredRotatedEvent{VaultPath: "secret/x/alice", KVVersion: 2, VersionBefore: 1,
		Fingerprint: creds.NewSecret(fakeToken2).Fingerprint(), EnvFile: r.cfg.EnvFile,
		Policy: "t3 keeps the old token until it restarts (--restart-on-rotation=never)"}}
	if got := rec.all(); !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n got  %+v\n want %+v", got, want)
	}
	b, _ := os.ReadFile(r.cfg.EnvFile)
	if string(b) != "CLAUDE_CODE_OAUTH_TOKEN="+fakeToken2+"\n" {
		t.Errorf("env file not rewritten")
	}
	if r.pending || r.restartDue(time.Now(), idleNow) {
		t.Error("policy never restarts")
	}
	if strings.Contains(rec.text.String(), fakeToken2) {
		t.Error("the token was printed")
	}
}

var (
	busyNow = cgroup.Verdict{Busy: true}
	idleNow = cgroup.Verdict{}
)

func TestRotationWhenIdle(t *testing.T) {
	r, ev, _ := testRotation(t, supervise.RestartWhenIdle)
	r.handle(ev, refreshResult{res: creds.Result{Outcome: creds.Found, Token: creds.NewSecret(fakeToken2), Version: 2}})
	t0 := time.Unix(1000, 0)
	if r.restartDue(t0, busyNow) || r.restartDue(t0.Add(10*time.Minute), busyNow) {
		t.Fatal("restart while agents run")
	}
	if r.restartDue(t0.Add(11*time.Minute), idleNow) {
		t.Fatal("restart the moment agents stopped")
	}
	if r.restartDue(t0.Add(11*time.Minute+59*time.Second), idleNow) {
		t.Fatal("restart before --rotation-idle passed")
	}
	if r.restartDue(t0.Add(12*time.Minute), busyNow) { // an agent came back: the idle clock restarts
		t.Fatal("restart while an agent runs again")
	}
	if r.restartDue(t0.Add(12*time.Minute+30*time.Second), idleNow) || !r.restartDue(t0.Add(13*time.Minute+30*time.Second), idleNow) {
		t.Fatal("no restart after a whole idle minute")
	}
	// A leaf too young to judge (T3's account probe, a session just opened) holds the restart
	// back while it is there, and the idle clock goes on: once it is gone, the restart is due.
	y, ev3, _ := testRotation(t, supervise.RestartWhenIdle)
	y.handle(ev3, refreshResult{res: creds.Result{Outcome: creds.Found, Token: creds.NewSecret(fakeToken2), Version: 2}})
	young := cgroup.Verdict{Young: 1}
	if y.restartDue(t0, idleNow) || y.restartDue(t0.Add(4*time.Minute), young) || y.restartDue(t0.Add(5*time.Minute), young) {
		t.Fatal("restart while a young leaf is there")
	}
	if !y.restartDue(t0.Add(5*time.Minute+5*time.Second), idleNow) {
		t.Fatal("the young leaf restarted the idle clock: no restart once it was gone")
	}
	a, ev2, _ := testRotation(t, supervise.RestartAlways)
	a.handle(ev2, refreshResult{res: creds.Result{Outcome: creds.Deleted}})
	a.handle(ev2, refreshResult{res: creds.Result{Outcome: creds.Deleted}}) // the confirming read
	if !a.restartDue(t0, busyNow) {
		t.Fatal("always: an opt-out while running restarts at once")
	}
	if _, err := os.Stat(a.cfg.EnvFile); !os.IsNotExist(err) {
		t.Errorf("opt-out did not remove the env file: %v", err)
	}
}

func TestRotationOutageReportsOnceAndChangesNothing(t *testing.T) {
	r, ev, rec := testRotation(t, supervise.RestartAlways)
	if _, err := creds.WriteEnvFile(r.cfg.EnvFile, creds.NewSecret(fakeToken1)); err != nil {
		t.Fatal(err)
	}
	fail := fmt.Errorf("%w: connection refused", creds.ErrUnavailable)
	for i := 0; i < 6; i++ {
		r.handle(ev, refreshResult{err: fail})
	}
	if got := rec.all(); len(got) != 1 || got[0].(RefreshFailedEvent).Err != fail {
		t.Errorf("want one credential_refresh_failed for one outage: %+v", got)
	}
	if r.pending || r.restartDue(time.Now(), idleNow) {
		t.Error("an outage asked for a restart")
	}
	if b, _ := os.ReadFile(r.cfg.EnvFile); string(b) != "CLAUDE_CODE_OAUTH_TOKEN="+fakeToken1+"\n" {
		t.Error("an outage touched the env file")
	}
	if r.backoff.Failures() != 6 {
		t.Errorf("backoff counted %d failures", r.backoff.Failures())
	}
	r.handle(ev, refreshResult{res: creds.Result{Outcome: creds.Found, Token: creds.NewSecret(fakeToken1), Version: 1, Path: "secret/x/alice"}})
	if got := rec.all()[1:]; !reflect.DeepEqual(got, []event{RefreshRecoveredEvent{VaultPath: "secret/x/alice", Failures: 6}}) || r.backoff.Failures() != 0 {
		t.Errorf("no recovery after 6 failures: %+v", got)
	}
}

// After an outage a fleet's re-reads succeed within the same few seconds: each supervisor must
// then go back to its own slot, not re-read one interval later in step with the others
// (bench/fleet saw a third of 200 stay in step).
func TestRotationReturnsToItsSlotAfterARecovery(t *testing.T) {
	const interval = time.Hour
	for _, user := range []string{"alice", "bob", "carol"} {
		r, ev, _ := testRotation(t, supervise.RestartNever)
		r.sched = creds.NewSchedule(user, interval)
		r.handle(ev, refreshResult{err: fmt.Errorf("%w: connection refused", creds.ErrUnavailable)})
		r.handle(ev, refreshResult{res: creds.Result{Outcome: creds.Found, Token: creds.NewSecret(fakeToken1), Version: 1}})
		if slot := time.Duration(r.next.UnixNano() % int64(interval)); slot != r.sched.Offset {
			t.Errorf("%s: next re-read at %v, %v into the interval; its slot is %v", user, r.next, slot, r.sched.Offset)
		}
		if d := time.Until(r.next); d < interval/10-time.Minute || d > interval+interval/10 {
			t.Errorf("%s: next re-read in %v", user, d)
		}
	}
}

// A running supervisor that sees the token vanish acts only when the next read agrees: the
// first "gone" changes nothing and schedules that read (after confirmAfter); a read that finds
// the token, or fails, in between resets it. The readings are fed in directly: no clock decides.
func TestOptOutIsConfirmedBySecondRead(t *testing.T) {
	gone := refreshResult{res: creds.Result{Outcome: creds.NoSecret, Path: "secret/x/alice"}}
	same := refreshResult{res: creds.Result{Outcome: creds.Found, Token: creds.NewSecret(fakeToken1), Version: 1}}
	failed := refreshResult{err: fmt.Errorf("%w: connection refused", creds.ErrUnavailable)}
	untouched := func(t *testing.T, r *rotation, rec *recorder) {
		t.Helper()
		if b, _ := os.ReadFile(r.cfg.EnvFile); string(b) != "CLAUDE_CODE_OAUTH_TOKEN="+fakeToken1+"\n" {
			t.Error("the env file changed")
		}
		if r.pending || r.restartDue(time.Now(), idleNow) || !r.current.Equal(creds.NewSecret(fakeToken1)) {
			t.Error("the restart policy was asked, or the token dropped")
		}
		if n := len(eventsOf[CredOptOutEvent](rec)) + len(eventsOf[EnvFileRemovedEvent](rec)); n != 0 {
			t.Errorf("acted on an unconfirmed opt-out: %+v", rec.all())
		}
	}
	for _, tc := range []struct {
		name     string
		then     []refreshResult
		confirms bool
	}{
		{"gone twice", []refreshResult{gone}, true},
		{"gone, then found", []refreshResult{same, gone}, false}, // the second "gone" is a first again
		{"gone, then a failure", []refreshResult{failed, gone}, false},
		{"gone, failure, gone, gone", []refreshResult{failed, gone, gone}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, ev, rec := testRotation(t, supervise.RestartAlways)
			if _, err := creds.WriteEnvFile(r.cfg.EnvFile, creds.NewSecret(fakeToken1)); err != nil {
				t.Fatal(err)
			}
			r.confirmAfter = time.Millisecond
			r.handle(ev, gone)
			untouched(t, r, rec)
			// The confirming read is scheduled: the timer fires (a condition, not a sleep).
			select {
			case <-r.C():
			case <-time.After(10 * time.Second):
				t.Fatal("no confirming read scheduled")
			}
			for _, rr := range tc.then {
				r.handle(ev, rr)
			}
			if !tc.confirms {
				untouched(t, r, rec)
				unconfirmed := RefreshFailedEvent{Gone: creds.NoSecret.String(), Then: creds.Found.String(),
					After: time.Millisecond, EnvFile: r.cfg.EnvFile}
				if tc.then[0].err == nil && !slices.Contains(eventsOf[RefreshFailedEvent](rec), unconfirmed) {
					t.Errorf("no word of the unconfirmed opt-out: %+v", rec.all())
				}
				return
			}
			if _, err := os.Stat(r.cfg.EnvFile); !os.IsNotExist(err) {
				t.Errorf("confirmed, but the env file stays: %v", err)
			}
			want := []event{
				EnvFileRemovedEvent{EnvFile: r.cfg.EnvFile, Running: true},
				CredOptOutEvent{TokenInfo: TokenInfo{VaultPath: "secret/x/alice"}, Outcome: creds.NoSecret.String(),
					FirstSaid: creds.NoSecret.String(), Policy: "restarting t3 now (--restart-on-rotation=always)"},
			}
			if got := rec.all(); !r.pending || !r.current.IsZero() || !reflect.DeepEqual(got[len(got)-2:], want) {
				t.Errorf("confirmed, but not acted on: %+v", got)
			}
		})
	}
}
