//go:build linux

package cgroup

import (
	"context"
	"os"
	"time"
)

// The watch: one goroutine, one loop (Watch), and the state its mechanisms share (watcher).
// Each concern is its own file: placement (place_linux.go), process sampling (sample_linux.go),
// OOM victims (oom_linux.go), the pressure kill (kill_linux.go, deciding in pressure.go), leaf
// cleanup (cleanup_linux.go), limits (guard_linux.go), strays (police_linux.go), the server
// (server_linux.go); the events they send are in events.go.

// WatchConfig tunes the watch.
type WatchConfig struct {
	ServerPID      int
	Limits         Limits
	AgentOOMAdj    int           // oom_score_adj of agents placed by the watch (the shim sets its own)
	PlaceInterval  time.Duration // how often server/ is checked for new children (default 100ms)
	SampleInterval time.Duration // how often memory and pressure are sampled (default 1s)
	// PressureWindow is how long agents/ must stay over memory.high, stalled for at least
	// PressureStall of the wall time, before the supervisor kills the largest agent process.
	// 0 disables the pressure kill.
	PressureWindow time.Duration
	PressureStall  float64
	KillGrace      time.Duration // SIGTERM to SIGKILL for a pressure kill (default 5s)
	// Port is the TCP port t3 listens on (0: unknown). The process in server/ that listens on
	// it is the server, even behind a wrapper that does not exec (server_linux.go).
	Port int
	// AgentNames are the agent programs (--agent-names): while the server is not recognised
	// yet, only processes running one of them are placed.
	AgentNames []string
	// SupervisorPID is the supervisor's own pid, the only process supervisor/ may hold; any
	// other process there, or in a cgroup of the subtree the supervisor did not make, escaped
	// the workload's limits and is killed (police_linux.go). 0: not policed.
	SupervisorPID int
	// ShimExe is the supervisor's own executable. A process in server/ running it is a shim
	// about to place itself; the watch leaves it alone for a moment so the shim does its job
	// (and the event says so), and takes over if it is still there after shimGrace.
	ShimExe string
	// Plan is the plan applied to the subtree. The watch reads back the limits it wrote (and
	// each placed leaf's, LeafSteps) when they change and at every sweep (look_linux.go), and
	// writes back any that drifted: the user owns those files too (guard.go). Nil: not guarded.
	Plan []Step
	// Clock runs the watch's tickers and grace periods and stamps its samples; nil is the wall
	// clock (clock.go).
	Clock Clock
	// PSITriggerOff keeps the watch sampling memory.pressure even where a PSI trigger could wake
	// it (--psi-trigger off; psi_linux.go).
	PSITriggerOff bool
}

func (c *WatchConfig) defaults() {
	if c.PlaceInterval <= 0 {
		c.PlaceInterval = 100 * time.Millisecond
	}
	if c.SampleInterval <= 0 {
		c.SampleInterval = time.Second
	}
	if c.KillGrace <= 0 {
		c.KillGrace = 5 * time.Second
	}
}

type watcher struct {
	t       *Tree
	cfg     WatchConfig
	out     chan Event
	leaves  map[string]bool
	procs   map[int]Victim   // the last sample of every workload process, for naming victims
	gone    map[int]goneProc // vanished since the last sample, not yet named
	oom     uint64           // workload memory.events oom_kill seen so far
	oomSeen uint64           // workload memory.events oom seen so far
	held    []heldKill       // OOM kills counted, their victims not found yet (oom_linux.go)
	hot     bool             // near a limit: sample processes at PlaceInterval, not rarely
	quiet   int              // sample ticks since the last process refresh while not hot
	hist    []PressureSample
	clock   Clock
	kills   map[int]*pendingKill
	seen    map[int]time.Time // when each process in server/ was first seen there
	leafOOM map[string]uint64 // each agent leaf's own oom_kill counter at the last look
	// Victims already reported (pid -> start time): a dying victim can linger in its leaf for
	// a while, and must be neither sampled again nor named twice.
	named map[int]uint64
	shim  os.FileInfo // the supervisor's executable, to recognise shims
	// server: the processes recognised as the server (pid -> start time), the listener on
	// cfg.Port and its ancestors up to the direct child; serverKnown: recognised (or no port).
	server      map[int]uint64
	serverKnown bool
	strays      map[int]uint64    // processes killed for escaping (pid -> start), reported once
	guardErr    map[string]string // limit file -> the failure to restore it said last (guard_linux.go)
	psi         *psiTrigger       // nil: sampling mode (psi_linux.go)
	n           *notifier         // the inotify instance (notify_linux.go); nil: none (unit tests of single mechanisms)
	looks       int               // place ticks so far, to time the sweep (look_linux.go)
	eventLooks  int               // full looks on inotify events since the last place tick
	lookDue     bool              // an event found the budget spent: a full look at the next tick
}

func newWatcher(t *Tree, cfg WatchConfig) *watcher {
	if cfg.Clock == nil {
		cfg.Clock = wallClock{}
	}
	return &watcher{
		t: t, cfg: cfg, clock: cfg.Clock, out: make(chan Event, 64),
		leaves: map[string]bool{}, procs: map[int]Victim{}, gone: map[int]goneProc{}, kills: map[int]*pendingKill{},
		leafOOM: map[string]uint64{}, named: map[int]uint64{}, server: map[int]uint64{}, strays: map[int]uint64{},
		guardErr: map[string]string{},
	}
}

// Watch places agents, watches memory events and pressure, and kills on sustained pressure,
// until ctx ends; then the channel is closed. One goroutine does all of it, so no state is shared.
func (t *Tree) Watch(ctx context.Context, cfg WatchConfig) (<-chan Event, error) {
	cfg.defaults()
	w := newWatcher(t, cfg)
	if ev, err := t.memoryEvents(WorkloadDir); err == nil {
		w.oom, w.oomSeen = ev.OOMKill, ev.OOM
	}
	if cfg.ShimExe != "" {
		w.shim, _ = os.Stat(cfg.ShimExe)
	}
	if cfg.PressureWindow > 0 && cfg.Limits.MemoryHigh.IsSet() && !cfg.Limits.MemoryHigh.IsMax() {
		// Said once, at the start: before, every sample's failed read left the stall at 0, and
		// the pressure kill never fired without a word.
		if err := t.PressureAvailable(AgentsDir); err != nil {
			w.out <- PressureUnavailable{Err: err}
		}
	}
	n, err := t.newNotifier()
	if err != nil {
		return nil, err
	}
	w.n = n
	w.psi = w.startPSI(ctx)
	// The tickers start here, not in the goroutine: a clock stepped right after Watch returns
	// must find them.
	place := w.clock.NewTicker(cfg.PlaceInterval)
	tick := w.clock.NewTicker(cfg.SampleInterval)
	go func() {
		defer close(w.out)
		defer n.close()
		defer w.stopPSI()
		defer w.closeKills()
		defer place.Stop()
		defer tick.Stop()
		w.fullLook(ctx, true)
		w.refresh()
		for {
			select {
			case <-ctx.Done():
				return
			case <-n.memC:
				w.onMemoryEvents(ctx)
			case <-n.look:
				w.lookEvent(ctx)
			case now := <-place.C():
				w.placeTick(ctx, now)
			case now := <-tick.C():
				w.sampleTick(ctx, now)
			case <-w.psiWake():
				w.psiWoke(w.clock.Now())
			}
			w.pace(tick, w.clock.Now())
		}
	}()
	return w.out, nil
}

// placeTick is one look at PlaceInterval: the sweep's full look every sweepEvery ticks
// (look_linux.go), placement, and the small read that makes the watch hot.
func (w *watcher) placeTick(ctx context.Context, now time.Time) {
	w.nameHeld(ctx, now) // an OOM kill waiting for its victim: this look may find it
	w.looks++
	if sweep := w.looks%w.sweepEvery() == 0; sweep || w.lookDue {
		w.fullLook(ctx, sweep)
	}
	w.lookDue, w.eventLooks = false, 0
	w.moveOut(ctx)
	if !w.hot {
		// One small read: a balloon grows from nothing to memory.max in about a
		// second, far faster than the 1 s samples notice.
		cur, _ := w.t.readUint(WorkloadDir, "memory.current")
		w.hot = w.nearLimits(PressureSample{Current: cur})
	}
	if w.hot {
		w.refresh()
	}
	w.checkKills(ctx, now)
}

func (w *watcher) emit(ctx context.Context, e Event) {
	select {
	case w.out <- e:
	case <-ctx.Done():
	}
}

func (w *watcher) warn(ctx context.Context, err error) { w.emit(ctx, Warning{err}) }
