//go:build linux

package cgroup

import (
	"context"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lookTree is a fake tree laid out like a running unit's: the plan applied, the supervisor in
// supervisor/, a server in server/ and 8 agent leaves with their own limits (--agent-memory-max).
func lookTree(tb testing.TB) (*Tree, WatchConfig) {
	tb.Helper()
	tree := fakeTree(tb)
	l := defaultLimits(tb)
	if err := l.AgentMemoryMax.Set("2G"); err != nil {
		tb.Fatal(err)
	}
	cfg := WatchConfig{Limits: l, Plan: Plan(l), SupervisorPID: 4242, ServerPID: 4343, PlaceInterval: 100 * time.Millisecond}
	cfg.defaults()
	for f, v := range map[string]string{ServerDir + "/cgroup.procs": "4343\n", WorkloadDir + "/memory.current": "104857600\n"} {
		if err := os.WriteFile(tree.Dir(f), []byte(v), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range 8 {
		leaf := AgentsDir + fmt.Sprintf("/%d-%d", 5000+i, 100+i)
		if err := tree.mkdir(tree.Dir(leaf)); err != nil {
			tb.Fatal(err)
		}
		for _, s := range LeafSteps(l) {
			if err := os.WriteFile(tree.Dir(path.Join(leaf, s.Dir, s.File)), []byte(s.Value), 0o644); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return tree, cfg
}

// startLook is a watcher over tree as Watch makes it, with the inotify instance, after its first
// full look (the leaves taken over).
func startLook(tb testing.TB, tree *Tree, cfg WatchConfig) *watcher {
	tb.Helper()
	w := newWatcher(tree, cfg)
	n, err := tree.newNotifier()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(n.close)
	w.n = n
	w.fullLook(context.Background(), true)
	for len(w.out) > 0 {
		<-w.out
	}
	return w
}

// BenchmarkLook compares one idle look at PlaceInterval: "every" is what each look did before
// (guard, police, placement with the leaf scan, memory.current), "tick" the look now (placement
// and memory.current, the full look every sweepEvery ticks). Read syscalls per look are from
// /proc/self/io; strace -c -f on each gives all of them.
func BenchmarkLook(b *testing.B) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		look func(w *watcher)
	}{
		{"every", func(w *watcher) {
			w.guardLimits(ctx)
			w.police(ctx)
			w.place(ctx)
			cur, _ := w.t.readUint(WorkloadDir, "memory.current")
			w.hot = w.nearLimits(PressureSample{Current: cur})
		}},
		{"tick", func(w *watcher) { w.placeTick(ctx, w.clock.Now()) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			tree, cfg := lookTree(b)
			w := startLook(b, tree, cfg)
			if c.name == "every" {
				w.n = nil // the look before had no watches to arm
			}
			r0 := readSyscalls(b)
			b.ResetTimer()
			for range b.N {
				c.look(w)
			}
			b.StopTimer()
			b.ReportMetric(float64(readSyscalls(b)-r0)/float64(b.N), "reads/op")
			if len(w.out) != 0 {
				b.Fatalf("an idle look said %v", <-w.out)
			}
		})
	}
}

func readSyscalls(tb testing.TB) int {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "syscr: "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	tb.Fatal("no syscr in /proc/self/io")
	return 0
}

// watchOnFrozenClock runs the watch on a clock that never moves: no place tick, no sweep, so
// whatever it does comes from its inotify instance.
func watchOnFrozenClock(t *testing.T, tree *Tree, cfg WatchConfig) <-chan Event {
	t.Helper()
	cfg.Clock = newFakeClock(t)
	if len(LeafSteps(cfg.Limits)) != 0 {
		t.Fatal("watchOnFrozenClock needs leaves without limits of their own")
	}
	replaceFile(t, tree.Dir(ServerDir+"/memory.low"), "0") // drifted before the watch starts
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	events, err := tree.Watch(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The watch's first full look runs when it starts and might find a change a test makes
	// right after: wait for it. With no limits on the leaves the guard reads server/memory.low
	// last (plan order, Guarded), so the restore of its drift is the end of that look.
	waitEvent(t, events, "the first look's restore", func(e Event) bool {
		r, ok := e.(LimitRestored)
		return ok && r.File == ServerDir+"/memory.low"
	})
	return events
}

// waitEvent returns the first event ok accepts; the bound is for a broken test only.
func waitEvent(t *testing.T, events <-chan Event, what string, ok func(Event) bool) Event {
	t.Helper()
	bound := time.After(10 * time.Second)
	for {
		select {
		case e, open := <-events:
			if !open {
				t.Fatalf("the watch ended before %s", what)
			}
			if ok(e) {
				return e
			}
		case <-bound:
			t.Fatalf("no %s without a place tick", what)
		}
	}
}

// A drifted limit is written back at once, on the write's inotify event: no place tick, no
// sweep. Before, only the next look (up to PlaceInterval) did it; on this frozen clock, never.
func TestDriftRestoredOnItsEvent(t *testing.T) {
	tree, cfg := lookTree(t)
	cfg.Limits.AgentMemoryMax = Size{}
	cfg.Plan = Plan(cfg.Limits)
	events := watchOnFrozenClock(t, tree, cfg)
	for _, f := range []string{WorkloadDir + "/memory.max", AgentsDir + "/memory.high"} {
		// A plain file is written in two steps (O_TRUNC, then
		// the bytes), each its own event, where cgroupfs takes a value in one write(2); replaced
		// by rename, it changes at once and the old inode gets IN_ATTRIB (its link count,
		// fsnotify_move). The write itself on cgroupfs: TestCgroupfsRaisesTheLooksEvents.
		replaceFile(t, tree.Dir(f), "max")
		e := waitEvent(t, events, "LimitRestored of "+f, func(e Event) bool {
			r, ok := e.(LimitRestored)
			return ok && r.File == f
		}).(LimitRestored)
		if e.Found != "max" {
			t.Errorf("%s: found %q, want max", f, e.Found)
		}
	}
}

// A process written into supervisor/cgroup.procs is killed at once, on the write's event; so is
// one in a cgroup made under workload/ (the mkdir's IN_CREATE wakes the look).
func TestEscapeKilledOnItsEvent(t *testing.T) {
	tree, cfg := lookTree(t)
	cfg.Limits.AgentMemoryMax = Size{}
	cfg.Plan = Plan(cfg.Limits)
	events := watchOnFrozenClock(t, tree, cfg)
	for _, dir := range []string{SupervisorDir, WorkloadDir + "/y"} {
		cmd := startHelper(t, "hang")
		procs := fmt.Sprintf("4242\n%d\n", cmd.Process.Pid)
		if dir != SupervisorDir {
			// A plain tree: the cgroup and its process appear in one rename, as a mkdir and a
			// move would on cgroupfs.
			tmp := t.TempDir() + "/y"
			if err := os.Mkdir(tmp, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(tmp+"/cgroup.procs", []byte(procs), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, tree.Dir(dir)); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(tree.Dir(dir+"/cgroup.procs"), []byte(procs), 0o644); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, events, "StrayKilled in "+dir, func(e Event) bool {
			s, ok := e.(StrayKilled)
			return ok && s.Cgroup == dir && s.Victim.PID == cmd.Process.Pid
		})
	}
}

// What no event announces (clone3 with CLONE_INTO_CGROUP writes no cgroup.procs) the sweep finds:
// the full look runs every sweepEvery place ticks, and only then.
func TestSweepEverySecond(t *testing.T) {
	tree, cfg := lookTree(t)
	w := newWatcher(tree, cfg) // no inotify instance: only the sweep
	ctx := context.Background()
	w.fullLook(ctx, true)
	for len(w.out) > 0 {
		<-w.out
	}
	if got := w.sweepEvery(); got != 10 {
		t.Fatalf("sweep every %d ticks of 100 ms, want 10 (1 s)", got)
	}
	f := AgentsDir + "/memory.high"
	replaceFile(t, tree.Dir(f), "max")
	for i := 1; i <= 10; i++ {
		w.placeTick(ctx, w.clock.Now())
		restored := false
		for len(w.out) > 0 {
			if r, ok := (<-w.out).(LimitRestored); ok && r.File == f {
				restored = true
			}
		}
		if restored != (i == 10) {
			t.Fatalf("tick %d: restored %v, want only at tick 10", i, restored)
		}
	}
}

// replaceFile gives p the content at once (a rename over it).
func replaceFile(t *testing.T, p, content string) {
	t.Helper()
	tmp := p + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// The kernel facts the event-driven look stands on, on a real cgroupfs: a write(2) to an
// interface file raises IN_MODIFY (vfs_write, fsnotify_modify) on cgroup.procs and on a limit
// file alike, chmod raises IN_ATTRIB (notify_change), mkdir of a cgroup IN_CREATE on its parent
// (vfs_mkdir, fsnotify_mkdir). Each check has an instance of its own, so no event of another
// answers it.
func TestCgroupfsRaisesTheLooksEvents(t *testing.T) {
	tree := hostTree(t)
	cmd, out := startIn(t, tree, "hang")
	out.ReadString('\n')
	const limit = "cgroup.max.descendants" // every cgroup has it, and its owner may write it
	t.Cleanup(func() { rmdir(tree.Dir(WorkloadDir + "/z")) })
	for _, c := range []struct {
		name, watch string
		mask        uint32
		act         func() error
	}{
		{"a pid written into cgroup.procs", AgentsDir + "/cgroup.procs", lookMask, func() error {
			return writeFile(tree.Dir(AgentsDir), "cgroup.procs", strconv.Itoa(cmd.Process.Pid))
		}},
		{"a limit written", WorkloadDir + "/" + limit, lookMask, func() error {
			return writeFile(tree.Dir(WorkloadDir), limit, "5")
		}},
		{"a limit file chmod'ed", WorkloadDir + "/" + limit, lookMask, func() error {
			return os.Chmod(tree.Dir(WorkloadDir+"/"+limit), 0o600)
		}},
		{"a cgroup made", WorkloadDir, dirMask, func() error {
			return os.Mkdir(tree.Dir(WorkloadDir+"/z"), 0o755)
		}},
	} {
		n, err := newNotifier() // the look's watches only: this hierarchy may have no memory controller
		if err != nil {
			t.Fatal(err)
		}
		if !n.arm(tree.Dir(c.watch), c.mask) {
			t.Fatalf("%s: cannot watch %s", c.name, c.watch)
		}
		if err := c.act(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		select {
		case <-n.look:
		case <-time.After(10 * time.Second): // a bound for a broken test
			t.Errorf("%s: no inotify event on %s", c.name, c.watch)
		}
		n.close()
	}
}

// A storm of events (an agent writing a limit file in a loop) starts at most maxEventLooks full
// looks between two place ticks; the rest is one look at the next tick.
func TestEventLooksAreBounded(t *testing.T) {
	tree, cfg := lookTree(t)
	w := newWatcher(tree, cfg)
	ctx := context.Background()
	f := WorkloadDir + "/memory.max"
	drifts := func(events int) (restored int) {
		for range events {
			replaceFile(t, tree.Dir(f), "max")
			w.lookEvent(ctx)
		}
		for len(w.out) > 0 {
			if r, ok := (<-w.out).(LimitRestored); ok && r.File == f {
				restored++
			}
		}
		return restored
	}
	if got := drifts(maxEventLooks + 3); got != maxEventLooks {
		t.Errorf("%d events before a tick: %d looks, want %d", maxEventLooks+3, got, maxEventLooks)
	}
	w.placeTick(ctx, w.clock.Now()) // not a sweep tick: the look is the one due
	if got := drifts(0); got != 1 {
		t.Errorf("the tick after the storm: %d looks, want the one due", got)
	}
	if got := drifts(1); got != 1 {
		t.Errorf("after the tick: %d looks for an event, want 1 (the budget is back)", got)
	}
}
