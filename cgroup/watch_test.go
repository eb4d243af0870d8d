//go:build linux

package cgroup

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// fakeTree is a set-up subtree on plain files, as a real run's Apply leaves it.
func fakeTree(t *testing.T) *Tree {
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
