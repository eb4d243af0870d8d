//go:build linux

package cgroup

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// fakeTree is a set-up subtree on plain files, as a real run's Apply leaves it.
func fakeTree(t testing.TB) *Tree {
	t.Helper()
	tree, err := Discover(strings.NewReader(unitLine), Options{Mount: fakeUnit(t, "memory pids", true), FakeFS: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.Apply(Plan(defaultLimits(t)), 4242); err != nil {
		t.Fatal(err)
	}
	return tree
}

// A host without PSI (no memory.pressure: CONFIG_PSI off, or psi=0) cannot have the pressure
// kill. The watch says so when it starts, and status shows it; before, every sample read 0
// stall and the kill never fired, without a word.
func TestNoPSIIsSaid(t *testing.T) {
	for _, psi := range []bool{true, false} {
		tree := fakeTree(t)
		if !psi {
			if err := os.Remove(tree.Dir(AgentsDir + "/memory.pressure")); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		events, err := tree.Watch(ctx, WatchConfig{Limits: defaultLimits(t), PressureWindow: 10 * time.Second, PressureStall: 0.25})
		if err != nil {
			t.Fatal(err)
		}
		// The event, if any, is queued before Watch returns.
		var said *PressureUnavailable
		select {
		case e := <-events:
			if pu, ok := e.(PressureUnavailable); ok {
				said = &pu
			}
		default:
		}
		cancel()
		if psi && said != nil {
			t.Errorf("with memory.pressure: %v", said.Err)
		}
		if !psi && (said == nil || !strings.Contains(said.Err.Error(), "memory.pressure")) {
			t.Errorf("without memory.pressure: event %+v, want PressureUnavailable naming the file", said)
		}
		st, err := tree.ReadStatus()
		if err != nil {
			t.Fatal(err)
		}
		if st.PSI != psi || (st.PSIError == "") == !psi {
			t.Errorf("status with PSI %v: psi %v, psi_error %q", psi, st.PSI, st.PSIError)
		}
	}
}

func TestParseListeners(t *testing.T) {
	// /proc/net/tcp and tcp6 as Linux 6.1 prints them (trimmed): a listener on 3773 (0EBD) on
	// 0.0.0.0 and one on ::1, a connection from 3773, a listener on another port.
	const tcp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0EBD 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 41234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0EBD 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 41299 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
`
	const tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0EBD 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 51234 1 0000000000000000 100 0 0 10 0
`
	got := parseListeners(strings.NewReader(tcp), 3773)
	if len(got) != 1 || !got[41234] {
		t.Errorf("tcp: %v, want only 41234", got)
	}
	if got := parseListeners(strings.NewReader(tcp6), 3773); len(got) != 1 || !got[51234] {
		t.Errorf("tcp6: %v, want only 51234", got)
	}
	if got := parseListeners(strings.NewReader(tcp), 1); len(got) != 0 {
		t.Errorf("port 1: %v", got)
	}
}

// The watch writes back a limit an agent changed, and says so once.
func TestGuardRestoresLimits(t *testing.T) {
	tree := fakeTree(t)
	l := defaultLimits(t)
	w := newWatcher(tree, WatchConfig{Limits: l, Plan: Plan(l)})
	w.guardLimits(context.Background())
	if len(w.out) != 0 {
		t.Fatalf("a freshly applied plan drifted: %v", <-w.out)
	}
	for _, f := range []string{WorkloadDir + "/memory.max", WorkloadDir + "/memory.swap.max", AgentsDir + "/memory.high"} {
		if err := os.WriteFile(tree.Dir(f), []byte("max"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(tree.Dir(WorkloadDir+"/cgroup.subtree_control"), []byte("pids"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.guardLimits(context.Background())
	got := map[string]LimitRestored{}
	for len(w.out) > 0 {
		if e, ok := (<-w.out).(LimitRestored); ok {
			got[e.File] = e
		}
	}
	want := map[string]string{
		WorkloadDir + "/memory.max":             l.MemoryMax.FileValue(),
		WorkloadDir + "/memory.swap.max":        "0",
		AgentsDir + "/memory.high":              l.MemoryHigh.FileValue(),
		WorkloadDir + "/cgroup.subtree_control": "+memory",
	}
	for f, v := range want {
		if e, ok := got[f]; !ok || e.Restored != v {
			t.Errorf("%s: event %+v, want restored %q", f, e, v)
		}
		if b, _ := os.ReadFile(tree.Dir(f)); string(b) != v {
			t.Errorf("%s reads %q after the look, want %q", f, b, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("events %v, want only %v", got, want)
	}
}

// The watch's loop runs on its clock: the pressure window is measured on the ticks' times and
// the SIGTERM-to-SIGKILL grace on the clock's Now, so a fake clock drives a whole pressure kill
// with no sleep. The victim is a real process (it ignores SIGTERM) in a leaf of a fake tree.
func TestWatchPressureKillOnItsClock(t *testing.T) {
	tree := fakeTree(t)
	l := defaultLimits(t)
	victim := exec.Command(os.Args[0])
	victim.Env = append(os.Environ(), helperEnv+"=stubborn")
	out, err := victim.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer victim.Process.Kill()
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { victim.Wait(); close(exited) }()
	leaf := AgentsDir + "/balloon"
	if err := os.Mkdir(tree.Dir(leaf), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(file, content string) {
		t.Helper()
		// Whole files by rename: the loop may read one while it is replaced.
		tmp := tree.Dir(file) + ".new"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, tree.Dir(file)); err != nil {
			t.Fatal(err)
		}
	}
	write(leaf+"/cgroup.procs", fmt.Sprintf("%d\n", victim.Process.Pid))
	write(ServerDir+"/cgroup.procs", "")

	clk := newFakeClock(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const place = 100 * time.Millisecond
	events, err := tree.Watch(ctx, WatchConfig{Limits: l, PressureWindow: 10 * time.Second, PressureStall: 0.25,
		KillGrace: 5 * time.Second, PlaceInterval: place, SampleInterval: time.Second, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	kills := make(chan PressureKill, 1)
	go func() {
		for e := range events {
			if k, ok := e.(PressureKill); ok {
				kills <- k
			}
		}
	}()
	// Each second's sample reads: over memory.high, the high counter moving, 60% stalled. The
	// place tick after each sample returns only once the loop is done with it.
	high := l.MemoryHigh.N()
	for s := 0; s <= 10; s++ {
		write(AgentsDir+"/memory.events", fmt.Sprintf("low 0\nhigh %d\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n", 10+s))
		write(AgentsDir+"/memory.pressure", fmt.Sprintf("some avg10=60.00 avg60=60.00 avg300=60.00 total=%d\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", 100_000_000+s*600_000))
		write(AgentsDir+"/memory.current", fmt.Sprintf("%d\n", high+1))
		if s == 0 {
			clk.Advance(time.Second)
		} else {
			clk.Advance(time.Second - place)
		}
		clk.Advance(place)
		select {
		case k := <-kills:
			t.Fatalf("killed after %d s of pressure, before a whole window: %+v", s, k)
		case <-exited:
			t.Fatalf("the victim ended after %d s of pressure, before a whole window", s)
		default:
		}
	}
	// The window is whole: SIGTERM went out, which it ignores. Just before the grace ends, it
	// still runs; just after, SIGKILL.
	clk.Advance(5*time.Second - 2*place)
	select {
	case <-exited:
		t.Fatal("SIGKILL before the grace period ended")
	default:
	}
	clk.Advance(2 * place)
	select {
	case <-exited:
	case <-time.After(10 * time.Second): // a bound for a broken test
		t.Fatal("no SIGKILL after the grace period")
	}
	clk.Advance(place) // the look that sees it gone
	select {
	case k := <-kills:
		if k.Signal != "SIGKILL" || k.Victim.PID != victim.Process.Pid || k.Window != 10*time.Second || k.Stall < 0.59 || k.Stall > 0.61 {
			t.Errorf("event %+v, want pid %d ended by SIGKILL at 60%% stall over 10s", k, victim.Process.Pid)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no PressureKill event")
	}
}
