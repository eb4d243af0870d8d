//go:build linux

package main

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"t3-supervise/creds"
)

// noteRecorder is the supervise.Notifier of the unit tests: what the supervisor would have
// told systemd, in order.
type noteRecorder struct {
	mu  sync.Mutex
	got []string
}

func (r *noteRecorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, s)
}

func (r *noteRecorder) Ready(string)                  { r.add("READY=1") }
func (r *noteRecorder) Status(string)                 { r.add("STATUS") }
func (r *noteRecorder) Watchdog(string)               { r.add("WATCHDOG=1") }
func (r *noteRecorder) ExtendTimeout(d time.Duration) { r.add("EXTEND_TIMEOUT_USEC=" + d.String()) }
func (r *noteRecorder) Stopping()                     { r.add("STOPPING=1") }

// take returns what was sent since the last take.
func (r *noteRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// stepClock is a supervise.Clock that moves only when the test says.
type stepClock struct{ t time.Time }

func (c *stepClock) Now() time.Time          { return c.t }
func (c *stepClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func testHealthState(t *testing.T, ready time.Duration) (*healthState, *stepClock, *noteRecorder) {
	t.Helper()
	clk := &stepClock{t: time.Date(2027, 1, 1, 9, 0, 0, 0, time.UTC)}
	n := &noteRecorder{}
	cfg := &config{Health: healthConfig{ReadyTimeout: ready, LivenessWindow: time.Minute}}
	p := &plan{decision: creds.Decision{From: creds.FromVault}}
	return newHealthState(cfg, p, 42, nil, clk, n), clk, n
}

// The readiness deadline runs on the injected clock alone: t3 gets --ready-timeout from its
// start, not a moment more, while systemd's start timeout is pushed back every 5 s meanwhile.
func TestReadinessDeadlineOnTheInjectedClock(t *testing.T) {
	hs, clk, notes := testHealthState(t, 2*time.Minute)
	ev, rec := recordEvents("alice")
	down := errors.New("connection refused")
	if hs.record(ev, down) {
		t.Fatal("gave up at the first probe")
	}
	if got := notes.take(); !reflect.DeepEqual(got, []string{"EXTEND_TIMEOUT_USEC=15s"}) {
		t.Errorf("first failed probe told systemd %q", got)
	}
	clk.advance(time.Second)
	hs.record(ev, down)
	if got := notes.take(); len(got) != 0 {
		t.Errorf("a second later, told systemd %q: the extension is not due yet", got)
	}
	clk.advance(5 * time.Second)
	hs.record(ev, down)
	if got := notes.take(); !reflect.DeepEqual(got, []string{"EXTEND_TIMEOUT_USEC=15s"}) {
		t.Errorf("6 s in, told systemd %q", got)
	}
	clk.advance(2*time.Minute - 6*time.Second) // at the deadline: still in time
	if hs.record(ev, down) {
		t.Fatalf("gave up at the deadline itself: %+v", rec.all())
	}
	clk.advance(time.Second)
	if !hs.record(ev, down) {
		t.Fatal("kept waiting past --ready-timeout")
	}
	want := []event{UnresponsiveEvent{PID: 42, Failures: 5, ExitCode: exitUnresponsive, Last: down, Waited: 2*time.Minute + time.Second}}
	if got := rec.all(); !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n got  %+v\n want %+v", got, want)
	}
}

// An answer inside the deadline is READY=1, with the start-up time on the same clock; from then
// on only the liveness window counts, however long ago the start was.
func TestReadyInTimeThenLiveness(t *testing.T) {
	hs, clk, notes := testHealthState(t, 2*time.Minute)
	ev, rec := recordEvents("alice")
	clk.advance(2*time.Minute - time.Second)
	if hs.record(ev, nil) {
		t.Fatal("gave up on an answer")
	}
	if got := notes.take(); !reflect.DeepEqual(got, []string{"READY=1"}) {
		t.Errorf("first answer told systemd %q", got)
	}
	want := []event{ServerReadyEvent{PID: 42, Startup: 2*time.Minute - time.Second}}
	if got := rec.all(); !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n got  %+v\n want %+v", got, want)
	}
	clk.advance(time.Hour) // far past the readiness deadline
	if hs.record(ev, nil) {
		t.Fatal("the readiness deadline applied after t3 was ready")
	}
	clk.advance(30 * time.Second)
	if hs.record(ev, errors.New("no answer within 5s")) {
		t.Fatal("gave up inside the liveness window")
	}
	if got := notes.take(); !reflect.DeepEqual(got, []string{"WATCHDOG=1", "STATUS"}) {
		t.Errorf("an answer and a miss told systemd %q", got)
	}
}
