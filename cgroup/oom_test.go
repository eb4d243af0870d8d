//go:build linux

package cgroup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"t3-supervise/internal/procstat"
)

// The kernel's OOM victim is named whatever the order in which the watch reads the moved
// oom_kill counter, the victim gets its SIGKILL and its parent reaps it. mm/oom_kill.c raises
// the event before it sends the signal, and memcg_memory_event wakes the watch through agents/
// before it counts workload/, so a look can find the counter moved and the victim alive and
// unsignalled; an agent reaps its tool at once, so a victim born after the last sample can be
// gone before the look. Before, a kill that found no victim at its first look was reported
// without one at once (the VM soak: "the event named nothing", about once in 100-1000
// balloons). The victim is a real process in a leaf of a fake tree; the steps write the files
// the kernel would and call the watch's handlers as its loop does, on a fake clock.
func TestOOMVictimNamed(t *testing.T) {
	type step int
	const (
		born      step = iota // the victim starts in its leaf
		sample                // a sample of every process (a place tick near a limit)
		oomEvent              // mem_cgroup_oom counts: workload's oom moves, not yet oom_kill
		killEvent             // oom_kill moves (leaf, agents/, workload/) and the watch reads it
		zombie                // the victim takes its SIGKILL and exits; its parent has not reaped it
		reaped                // the victim takes its SIGKILL, exits and is reaped: gone from its leaf
		tick                  // one place tick, 100 ms later on the watch's clock
		almost                // a place tick just before oomHold has passed since the kill was read
		late                  // a place tick once oomHold has passed
	)
	names := map[step]string{born: "born", sample: "sample", oomEvent: "oom", killEvent: "kill", zombie: "zombie",
		reaped: "reaped", tick: "tick", almost: "almost", late: "late"}
	for _, tc := range []struct {
		name  string
		steps []step
		at    int  // the step after which the one OOMKill comes; none before it
		known bool // it names the victim (pid, comm, leaf), else only the leaf
	}{
		// The kernel's order of things, the watch reading at each point of it.
		{"sampled, reaped before the kill was read", []step{born, sample, reaped, killEvent}, 3, true},
		{"sampled, dying when the kill was read", []step{born, sample, zombie, killEvent}, 3, true},
		{"unsampled, dying in its leaf when the kill was read", []step{born, zombie, killEvent}, 2, true},
		{"sampled, not signalled yet when the kill was read", []step{born, sample, killEvent, reaped, tick}, 4, true},
		{"sampled, not signalled yet, reaped before the next sample", []step{born, sample, killEvent, tick, reaped, tick}, 5, true},
		{"unsampled, not signalled yet when the kill was read", []step{born, killEvent, reaped, tick}, 3, true},
		{"unsampled, seen at the oom event, reaped before the kill was read", []step{born, oomEvent, reaped, killEvent}, 3, true},
		{"not signalled until just before the hold ends", []step{born, sample, killEvent, tick, almost, reaped, late}, 6, true},
		// No victim to be found: reported with its leaf once the hold is over, not before.
		{"never seen", []step{killEvent, tick, almost, late}, 3, false},
		{"born and reaped between two samples", []step{born, reaped, killEvent, tick, almost, late}, 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := fakeTree(t)
			write := func(file, content string) {
				t.Helper()
				if err := os.WriteFile(tree.Dir(file), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			const leaf = "77-7777"
			if err := os.Mkdir(tree.Dir(AgentsDir+"/"+leaf), 0o755); err != nil {
				t.Fatal(err)
			}
			events := func(oom, kills int) string {
				return fmt.Sprintf("low 0\nhigh 0\nmax 9\noom %d\noom_kill %d\noom_group_kill 0\n", oom, kills)
			}
			write(ServerDir+"/cgroup.procs", "")
			write(AgentsDir+"/"+leaf+"/cgroup.procs", "")
			for _, d := range []string{WorkloadDir, AgentsDir, AgentsDir + "/" + leaf} {
				write(d+"/memory.events", events(0, 0))
			}
			clk := newFakeClock(t)
			const place = 100 * time.Millisecond
			w := newWatcher(tree, WatchConfig{Limits: defaultLimits(t), PlaceInterval: place, SampleInterval: time.Second, Clock: clk})
			ctx := context.Background()
			w.refresh()

			var victim *exec.Cmd
			var victimComm string
			var killRead time.Time
			for i, s := range tc.steps {
				switch s {
				case born:
					victim = startHelper(t, "hang")
					victimComm = comm(victim.Process.Pid, "")
					write(AgentsDir+"/"+leaf+"/cgroup.procs", fmt.Sprintf("%d\n", victim.Process.Pid))
				case sample:
					w.refresh()
				case oomEvent:
					write(WorkloadDir+"/memory.events", events(1, 0))
					w.onMemoryEvents(ctx)
				case killEvent:
					for _, d := range []string{AgentsDir + "/" + leaf, AgentsDir, WorkloadDir} {
						write(d+"/memory.events", events(1, 1))
					}
					killRead = clk.Now()
					w.onMemoryEvents(ctx)
				case zombie:
					victim.Process.Signal(syscall.SIGKILL)
					for deadline := time.Now().Add(10 * time.Second); ; { // a bound for a broken test
						if st, err := procstat.Read(victim.Process.Pid); err == nil && st.State == 'Z' {
							break
						}
						if time.Now().After(deadline) {
							t.Fatal("the killed victim is no zombie after 10 s")
						}
						time.Sleep(time.Millisecond)
					}
				case reaped:
					victim.Process.Kill()
					victim.Wait()
					write(AgentsDir+"/"+leaf+"/cgroup.procs", "")
				case tick:
					clk.Advance(place)
					w.placeTick(ctx, clk.Now())
				case almost:
					clk.Advance(killRead.Add(oomHold - place).Sub(clk.Now()))
					w.placeTick(ctx, clk.Now())
				case late:
					clk.Advance(killRead.Add(oomHold).Sub(clk.Now()))
					w.placeTick(ctx, clk.Now())
				}
				var kills []OOMKill
				for len(w.out) > 0 {
					if k, ok := (<-w.out).(OOMKill); ok {
						kills = append(kills, k)
					}
				}
				switch {
				case i < tc.at && len(kills) > 0:
					t.Fatalf("after step %d (%s): %+v, want no report yet", i, names[s], kills)
				case i == tc.at && len(kills) != 1:
					t.Fatalf("after step %d (%s): %+v, want one OOMKill", i, names[s], kills)
				case i > tc.at && len(kills) > 0:
					t.Fatalf("after step %d (%s): %+v, a second report", i, names[s], kills)
				case i == tc.at:
					k := kills[0]
					if tc.known {
						if !k.Known || k.Victim.PID != victim.Process.Pid || k.Victim.Comm != victimComm || k.Victim.Leaf != leaf || k.Count != 1 {
							t.Errorf("%+v, want pid %d comm %q in %s, count 1", k, victim.Process.Pid, victimComm, leaf)
						}
						// Held: found by the look that read the kill, or by a later one.
						if (tc.steps[tc.at] == killEvent) != (k.Held == 0) {
							t.Errorf("held %v, found at step %s", k.Held, names[tc.steps[tc.at]])
						}
					} else if k.Held < oomHold {
						t.Errorf("reported unnamed after %v, before the hold %v ended", k.Held, oomHold)
					} else if k.Known || k.Victim.PID != 0 || k.Victim.Leaf != leaf || k.Count != 1 {
						t.Errorf("%+v, want an unnamed kill in %s, count 1", k, leaf)
					}
				}
			}
			if len(w.held) != 0 {
				t.Errorf("%d kills still held at the end", len(w.held))
			}
		})
	}
}
