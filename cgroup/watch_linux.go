//go:build linux

package cgroup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Event is something the watch saw or did. Each becomes one journald entry upstream.
type Event interface{ cgroupEvent() }

// AgentPlaced: a new agent process tree got its own leaf.
type AgentPlaced struct {
	Leaf string
	PID  int
	Comm string
	Via  string // "shim" (it moved itself), "watch" (moved out of server/), "other" (a leaf made by someone else)
}

// LeafRemoved: an agent leaf emptied and was removed.
type LeafRemoved struct{ Leaf string }

// OOMKill: the kernel's OOM killer killed a process in the workload.
type OOMKill struct {
	Victim Victim
	Known  bool   // false when the victim could not be identified (then only the counter moved)
	Count  uint64 // workload memory.events oom_kill after this kill
	// Seen is CLOCK_MONOTONIC when the watch read the moved counter: with the kernel's own
	// timestamp of the kill it splits the event's latency into noticing and reporting.
	Seen time.Duration
}

// PressureKill: the supervisor ended the largest agent process on sustained memory pressure.
type PressureKill struct {
	Victim Victim
	Signal string  // the signal that ended it: SIGTERM, or SIGKILL after the grace period
	Stall  float64 // share of wall time agents/ was stalled on memory over the window
	Window time.Duration
}

// Warning: something in the watch failed; it keeps going.
type Warning struct{ Err error }

// PressureUnavailable: the pressure kill is configured but agents/memory.pressure cannot be
// read (a kernel without CONFIG_PSI, or booted with psi=0): only memory.max's OOM kill ends a
// runaway, after memory.high has throttled it for as long as it takes (the 2026-07-02 livelock).
type PressureUnavailable struct{ Err error }

func (PressureUnavailable) cgroupEvent() {}

func (AgentPlaced) cgroupEvent()  {}
func (LeafRemoved) cgroupEvent()  {}
func (OOMKill) cgroupEvent()      {}
func (PressureKill) cgroupEvent() {}
func (Warning) cgroupEvent()      {}

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
	// each placed leaf's, LeafSteps) at every look and writes back any that drifted: the user
	// owns those files too (guard.go). Nil: not guarded.
	Plan []Step
}

// shimGrace is how long the watch lets a shim place itself; forkGrace is how long it leaves any
// new process alone first: between fork and exec a shim-to-be still runs the server's own
// executable, and under load that window is not short. A child that still shares the server's
// memory has not exec'd yet at all, and gets shimGrace too (sharesServerMM).
const (
	shimGrace = 2 * time.Second
	forkGrace = 300 * time.Millisecond
)

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

type sample struct {
	at       time.Time
	high     uint64 // agents/memory.events high
	stallUS  uint64 // agents/memory.pressure some total
	current  uint64 // workload/memory.current
	agentCur uint64 // agents/memory.current
	// ok: every reading of the pressure decision (high, stallUS, agentCur) succeeded. A failed
	// read leaves a zero, which is no reading: a window that began or ended on one made the
	// stall a difference against 0, or an unsigned wrap-around (a huge "stall", and a kill).
	ok bool
}

type pendingKill struct {
	victim    Victim
	pidfd     int
	deadline  time.Time
	escalated bool
	stall     float64
}

type goneProc struct {
	v  Victim
	at time.Time
}

type watcher struct {
	t       *Tree
	cfg     WatchConfig
	out     chan Event
	leaves  map[string]bool
	procs   map[int]Victim   // the last sample of every workload process, for naming victims
	gone    map[int]goneProc // vanished since the last sample, not yet named
	oom     uint64           // workload memory.events oom_kill seen so far
	hot     bool             // near a limit: sample processes at PlaceInterval, not rarely
	quiet   int              // sample ticks since the last process refresh while not hot
	hist    []sample
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
}

// isShim reports whether pid runs the supervisor's own executable (a shim not yet exec'd).
func (w *watcher) isShim(pid int) bool {
	if w.shim == nil {
		return false
	}
	st, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/exe")
	return err == nil && os.SameFile(st, w.shim)
}

// kcmpVM is KCMP_VM of include/uapi/linux/kcmp.h; x/sys/unix has the syscall number only.
const kcmpVM = 1

// sharesServerMM reports whether pid still uses the server's address space: a child spawned
// with vfork semantics (CLONE_VM|CLONE_VFORK: Go's os/exec, glibc's posix_spawn) that has not
// reached exec. kcmp(2) answers from the kernel's pointers, reading nothing of either process; it
// needs the same ptrace read access as /proc/PID/maps, which the supervisor has over its own
// user's processes. Any error (no CONFIG_KCMP, the process gone) is "no".
func (w *watcher) sharesServerMM(pid int) bool {
	if w.cfg.ServerPID <= 0 {
		return false
	}
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(w.cfg.ServerPID), kcmpVM, 0, 0, 0)
	return errno == 0 && r == 0
}

func newWatcher(t *Tree, cfg WatchConfig) *watcher {
	return &watcher{
		t: t, cfg: cfg, out: make(chan Event, 64),
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
		w.oom = ev.OOMKill
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
	notify, closeNotify, err := t.notifyMemoryEvents(ctx)
	if err != nil {
		return nil, err
	}
	go func() {
		defer close(w.out)
		defer closeNotify()
		defer w.closeKills()
		place := time.NewTicker(cfg.PlaceInterval)
		defer place.Stop()
		tick := time.NewTicker(cfg.SampleInterval)
		defer tick.Stop()
		w.refresh()
		for {
			select {
			case <-ctx.Done():
				return
			case <-notify:
				w.onMemoryEvents(ctx)
			case <-place.C:
				w.guardLimits(ctx)
				w.police(ctx)
				w.place(ctx)
				if !w.hot {
					// One small read: a balloon grows from nothing to memory.max in about a
					// second, far faster than the 1 s samples notice.
					cur, _ := w.t.readUint(WorkloadDir, "memory.current")
					w.hot = w.nearLimits(sample{current: cur})
				}
				if w.hot {
					w.refresh()
				}
				w.checkKills(ctx)
			case now := <-tick.C:
				w.sample(ctx, now)
			}
		}
	}()
	return w.out, nil
}

func (w *watcher) emit(ctx context.Context, e Event) {
	select {
	case w.out <- e:
	case <-ctx.Done():
	}
}

func (w *watcher) warn(ctx context.Context, err error) { w.emit(ctx, Warning{err}) }

// notifyMemoryEvents watches workload/ and agents/ memory.events with one inotify instance:
// the kernel raises IN_MODIFY on a memory.events file when its counters change, for the cgroup
// and each ancestor (cgroup_file_notify in memcg_memory_event). Returns a channel that gets a
// value when anything changed (coalesced).
func (t *Tree) notifyMemoryEvents(ctx context.Context) (<-chan struct{}, func(), error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, nil, fmt.Errorf("inotify_init1: %w", err)
	}
	f := os.NewFile(uintptr(fd), "inotify") // nonblocking: reads park the goroutine, Close wakes it
	for _, d := range []string{WorkloadDir, AgentsDir} {
		p := t.Dir(d + "/memory.events")
		if _, err := unix.InotifyAddWatch(fd, p, unix.IN_MODIFY); err != nil {
			f.Close()
			return nil, nil, &Error{Path: p, Err: fmt.Errorf("inotify_add_watch: %w", err)}
		}
	}
	c := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 64*unix.SizeofInotifyEvent)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}()
	return c, func() { f.Close() }, nil
}

func (t *Tree) memoryEvents(dir string) (MemoryEvents, error) {
	b, err := readFile(t.Dir(dir), "memory.events")
	if err != nil {
		return MemoryEvents{}, err
	}
	ev, err := ParseMemoryEvents(bytes.NewReader(b))
	if err != nil {
		return ev, &Error{Path: t.Dir(dir + "/memory.events"), Err: err}
	}
	return ev, nil
}

func (t *Tree) readUint(dir, file string) (uint64, error) {
	b, err := readFile(t.Dir(dir), file)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return ^uint64(0), nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, &Error{Path: t.Dir(dir + "/" + file), Err: err}
	}
	return n, nil
}

func (t *Tree) procs(dir string) ([]int, error) {
	b, err := readFile(t.Dir(dir), "cgroup.procs")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// agentLeaves lists the leaves under agents/.
func (t *Tree) agentLeaves() []string {
	entries, _ := os.ReadDir(t.Dir(AgentsDir))
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// place moves every process in server/ other than the server into an agent leaf: an SDK may
// spawn agents by absolute path, around the shim. A process is moved with the leaf of its
// topmost ancestor below the server, so a tree that forked before we saw it stays together.
func (w *watcher) place(ctx context.Context) {
	pids, err := w.t.procs(ServerDir)
	if err != nil {
		w.warn(ctx, err)
		return
	}
	w.resolveServer(ctx, pids)
	now := time.Now()
	seen := make(map[int]time.Time, len(pids))
	for _, pid := range pids {
		if w.isServer(pid) {
			continue
		}
		first, ok := w.seen[pid]
		if !ok {
			first = now
		}
		seen[pid] = first
		if age := now.Sub(first); age < forkGrace || (age < shimGrace && (w.isShim(pid) || w.sharesServerMM(pid))) {
			continue
		}
		root := pid
		if w.serverKnown {
			root = w.rootBelowServer(pid)
		} else if !w.agentByName(pid) {
			continue // it may be the server behind a wrapper, not listening yet
		}
		leaf, err := LeafName(root)
		if err != nil {
			continue // exited meanwhile
		}
		created, err := w.ensureLeaf(leaf)
		if err != nil {
			w.warn(ctx, err)
			continue
		}
		if err := writeFile(w.t.Dir(AgentsDir+"/"+leaf), "cgroup.procs", strconv.Itoa(pid)); err != nil {
			if !errors.Is(err, unix.ESRCH) {
				w.warn(ctx, err)
			}
			continue
		}
		if err := setOOMScoreAdj(pid, w.cfg.AgentOOMAdj); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ESRCH) {
			w.warn(ctx, err)
		}
		if created {
			v, _ := describe(pid)
			w.emit(ctx, AgentPlaced{Leaf: leaf, PID: pid, Comm: v.Comm, Via: "watch"})
		}
	}
	w.seen = seen
	// Leaves the shim made for itself: apply the per-leaf limits and report them once.
	for _, leaf := range w.t.agentLeaves() {
		if w.leaves[leaf] {
			continue
		}
		if err := w.applyLeaf(leaf); err != nil {
			w.warn(ctx, err)
		}
		w.leaves[leaf] = true
		// A shim names its leaf <pid>-<start>; anything else was made by someone else.
		ev := AgentPlaced{Leaf: leaf, Via: "shim"}
		if pid, _, ok := strings.Cut(leaf, "-"); ok {
			if n, err := strconv.Atoi(pid); err == nil && n > 0 {
				v, _ := describe(n)
				ev.PID, ev.Comm = n, v.Comm
			}
		}
		if ev.PID == 0 {
			ev.Via = "other"
		}
		w.emit(ctx, ev)
	}
}

// rootBelowServer walks up from pid to the ancestor whose parent is the server (or one of the
// processes between the server and a wrapper). A process whose chain never reaches the server
// (re-parented after its parent died) is its own root.
func (w *watcher) rootBelowServer(pid int) int {
	cur := pid
	for i := 0; i < 64; i++ {
		st, err := readProcStat(cur)
		if err != nil || st.PPID <= 1 {
			return pid
		}
		if w.isServer(st.PPID) {
			return cur
		}
		cur = st.PPID
	}
	return pid
}

// ensureLeaf makes the agent leaf for a process the watch places. A leaf that already exists
// but is not ours yet was made by a shim that got there first (its process left server/ after
// the watch listed it): created=false, and the leaf scan in place applies its limits and
// reports it as the shim's.
func (w *watcher) ensureLeaf(leaf string) (created bool, err error) {
	if w.leaves[leaf] {
		return false, nil
	}
	dir := w.t.Dir(AgentsDir + "/" + leaf)
	if err := os.Mkdir(dir, 0o755); errors.Is(err, os.ErrExist) {
		return false, nil
	} else if err != nil {
		return false, &Error{Path: dir, Err: err}
	}
	w.leaves[leaf] = true
	return true, w.applyLeaf(leaf)
}

func (w *watcher) applyLeaf(leaf string) error {
	for _, s := range LeafSteps(w.cfg.Limits) {
		if err := writeFile(w.t.Dir(AgentsDir+"/"+leaf+"/"+s.Dir), s.File, s.Value); err != nil {
			return err
		}
	}
	return nil
}

// refresh samples every process in the workload, so a victim can be named with what it was
// just before it died. Processes that vanished since the last sample are kept for a few
// seconds: the OOM kill that took them may be reported a moment later.
func (w *watcher) refresh() {
	now := time.Now()
	next := make(map[int]Victim, len(w.procs))
	add := func(dir, leaf string) {
		pids, _ := w.t.procs(dir)
		for _, pid := range pids {
			if start, dead := w.named[pid]; dead {
				if st, err := readProcStat(pid); err == nil && st.Start == start {
					continue // the victim, still dying
				}
				delete(w.named, pid) // a new process with a reused pid
			}
			v, ok := w.procs[pid]
			if ok {
				// The name too: a tool renames itself after exec (prctl PR_SET_NAME; Claude
				// Code's bundled rg shows up as its version, 2.1.205), so the first look may
				// have seen its launcher's name.
				// A process that has begun to exit reads 0 (exit_mm drops its mm first): the
				// size it died with is the last one seen alive.
				if r := rss(pid); r > 0 {
					v.RSS = r
				}
				v.Comm = comm(pid, v.Comm)
			} else if v, ok = describe(pid); !ok {
				continue
			}
			v.Leaf = leaf
			next[pid] = v
		}
	}
	add(ServerDir, "server")
	for _, leaf := range w.t.agentLeaves() {
		add(AgentsDir+"/"+leaf, leaf)
	}
	for pid, v := range w.procs {
		if _, ok := next[pid]; !ok {
			w.gone[pid] = goneProc{v, now}
		}
	}
	for pid, g := range w.gone {
		if now.Sub(g.at) > 5*time.Second {
			delete(w.gone, pid)
		}
	}
	w.procs = next
}

// onMemoryEvents runs when memory.events of workload/ or agents/ changed.
func (w *watcher) onMemoryEvents(ctx context.Context) {
	w.hot = true
	seen := monotonic()
	ev, err := w.t.memoryEvents(WorkloadDir)
	if err != nil {
		w.warn(ctx, err)
		return
	}
	if ev.OOMKill <= w.oom {
		return
	}
	n := ev.OOMKill - w.oom
	w.oom = ev.OOMKill
	victims := w.findVictims(int(n))
	for _, v := range victims {
		if k, ok := w.kills[v.PID]; ok { // the kernel was faster than our pressure kill
			unix.Close(k.pidfd)
			delete(w.kills, v.PID)
		}
		w.emit(ctx, OOMKill{Victim: v, Known: true, Count: ev.OOMKill, Seen: seen})
	}
	for i := len(victims); i < int(n); i++ {
		w.emit(ctx, OOMKill{Victim: Victim{Leaf: w.leafOfKill()}, Count: ev.OOMKill, Seen: seen})
	}
	if len(victims) > 0 {
		w.leafOfKill() // keep the per-leaf counters current
	}
	w.refresh()
}

// findVictims names up to n processes the OOM killer just took: those of the last sample that
// are gone now, dying, or carry a pending SIGKILL, largest first (the OOM killer picks by size, and
// memory.oom.group=0 means one process per kill).
func (w *watcher) findVictims(n int) []Victim {
	var cands []Victim
	for _, g := range w.gone {
		if !w.wasNamed(g.v) {
			cands = append(cands, g.v)
		}
	}
	for pid, v := range w.procs {
		if w.wasNamed(v) {
			continue
		}
		st, err := readProcStat(pid)
		if err != nil || st.Start != v.start || st.dying() || sigkillPending(pid) {
			cands = append(cands, v)
		}
	}
	// A victim born after the last sample: still in its leaf, dying or with SIGKILL pending.
	for _, leaf := range w.t.agentLeaves() {
		pids, _ := w.t.procs(AgentsDir + "/" + leaf)
		for _, pid := range pids {
			if _, known := w.procs[pid]; known {
				continue
			}
			if st, err := readProcStat(pid); err != nil || !st.dying() && !sigkillPending(pid) {
				continue
			}
			if _, dead := w.named[pid]; dead {
				continue
			}
			if v, ok := describe(pid); ok {
				v.Leaf = leaf
				cands = append(cands, v)
			}
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].RSS > cands[j].RSS })
	if len(cands) > n {
		cands = cands[:n]
	}
	for _, v := range cands {
		delete(w.procs, v.PID)
		delete(w.gone, v.PID)
		w.named[v.PID] = v.start
	}
	// Forget victims that are gone for good (their pid may be reused).
	for pid, start := range w.named {
		if st, err := readProcStat(pid); err != nil || st.Start != start {
			delete(w.named, pid)
		}
	}
	return cands
}

func (w *watcher) wasNamed(v Victim) bool {
	start, ok := w.named[v.PID]
	return ok && start == v.start
}

// leafOfKill names the agent leaf whose own oom_kill counter moved since the last look, for an
// OOM kill whose victim could not be identified (it was born and died between two samples).
func (w *watcher) leafOfKill() string {
	found := ""
	for _, leaf := range w.t.agentLeaves() {
		ev, err := w.t.memoryEvents(AgentsDir + "/" + leaf)
		if err != nil {
			continue
		}
		if ev.OOMKill > w.leafOOM[leaf] && found == "" {
			found = leaf
		}
		w.leafOOM[leaf] = ev.OOMKill
	}
	return found
}

// sample reads memory and pressure, decides on a pressure kill, and removes empty leaves.
func (w *watcher) sample(ctx context.Context, now time.Time) {
	var s sample
	s.at = now
	okHigh, okStall := false, false
	if ev, err := w.t.memoryEvents(AgentsDir); err == nil {
		s.high, okHigh = ev.High, true
	}
	if b, err := readFile(w.t.Dir(AgentsDir), "memory.pressure"); err == nil {
		if some, _, err := ParsePressure(bytes.NewReader(b)); err == nil {
			s.stallUS, okStall = some.Total, true
		}
	}
	s.current, _ = w.t.readUint(WorkloadDir, "memory.current")
	var errCur error
	s.agentCur, errCur = w.t.readUint(AgentsDir, "memory.current")
	s.ok = okHigh && okStall && errCur == nil
	w.hist = append(w.hist, s)
	w.hot = w.nearLimits(s)
	w.pressureCheck(ctx)
	w.removeEmptyLeaves(ctx)
	if !w.hot {
		w.quiet++
		if w.quiet >= 5 {
			w.quiet = 0
			w.refresh()
		}
	}
}

// nearLimits: past half of memory.max or within 10% of memory.high, or over high in the last
// interval. Near a limit every process is sampled at PlaceInterval, so that the one the OOM
// killer takes can be named with its size at death.
func (w *watcher) nearLimits(s sample) bool {
	l := w.cfg.Limits
	if n := len(w.hist); n >= 2 && w.hist[n-1].high > w.hist[n-2].high {
		return true
	}
	near := func(cur uint64, lim Size, share float64) bool {
		return lim.IsSet() && !lim.IsMax() && float64(cur) >= share*float64(lim.N())
	}
	return near(s.agentCur, l.MemoryHigh, 0.9) || near(s.current, l.MemoryMax, 0.5)
}

// pressureCheck kills the largest agent process when, for the whole window, agents/ stayed
// over memory.high, its "high" counter moved, and it was stalled on memory (PSI "some") for at
// least PressureStall of the wall time. Without swap, memory.high below memory.max can throttle
// a runaway for minutes with no OOM kill at all (the 2026-07-02 livelock, and seen in the VM
// tier: the throttled balloon crawls a few MiB per second at 100% stall); this ends it before
// the machine suffers. The high counter moves in bursts (a throttled task sleeps up to 2 s per
// allocation, mm/memcontrol.c MEMCG_MAX_OVERAGE), so it is asked to move over the window, not
// in every interval; memory.current over memory.high is what must hold throughout.
func (w *watcher) pressureCheck(ctx context.Context) {
	win := w.cfg.PressureWindow
	high := w.cfg.Limits.MemoryHigh
	if win <= 0 || !high.IsSet() || high.IsMax() || len(w.hist) < 2 {
		w.trimHistory()
		return
	}
	first, stall, kill := pressureDecision(w.hist, win, uint64(high.N()), w.cfg.PressureStall)
	w.hist = w.hist[first:]
	// Incomplete samples never make a window (no PSI at all, say): keep at most two windows.
	for len(w.hist) > 2 && w.hist[len(w.hist)-1].at.Sub(w.hist[0].at) > 2*win {
		w.hist = w.hist[1:]
	}
	if !kill || len(w.kills) > 0 {
		return
	}
	w.refresh()
	var victim Victim
	for _, v := range w.procs {
		if v.Leaf != "server" && v.RSS > victim.RSS {
			victim = v
		}
	}
	if victim.PID == 0 {
		return
	}
	w.hist = w.hist[len(w.hist)-1:] // a new window after each kill
	fd, err := unix.PidfdOpen(victim.PID, 0)
	if err != nil {
		return // gone already
	}
	// The pidfd pins the process; check it is still the one sampled (pid reuse) before signalling.
	if st, err := readProcStat(victim.PID); err != nil || st.Start != victim.start {
		unix.Close(fd)
		return
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGTERM, nil, 0); err != nil {
		unix.Close(fd)
		w.warn(ctx, fmt.Errorf("pressure kill of pid %d: %w", victim.PID, err))
		return
	}
	w.kills[victim.PID] = &pendingKill{victim: victim, pidfd: fd, deadline: time.Now().Add(w.cfg.KillGrace), stall: stall}
}

// pressureDecision is the pure half of pressureCheck: over hist (oldest first, the newest last),
// is there a whole window of sustained pressure? first is how much of hist to drop (the samples
// older than the oldest one that still covers the window). Only complete samples are evidence:
// the window runs from the newest complete sample back to the newest complete one at least win
// older, and an incomplete sample in between neither proves nor breaks it. A counter that went
// backwards (a cgroup recreated under the same name) is no stall either.
func pressureDecision(hist []sample, win time.Duration, high uint64, minStall float64) (first int, stall float64, kill bool) {
	lastI := -1
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].ok {
			lastI = i
			break
		}
	}
	if lastI < 0 {
		return 0, 0, false
	}
	last := hist[lastI]
	first = -1
	for i := lastI; i >= 0; i-- {
		if hist[i].ok && last.at.Sub(hist[i].at) >= win {
			first = i
			break
		}
	}
	if first < 0 {
		return 0, 0, false // not yet a whole window of samples
	}
	for _, s := range hist[first : lastI+1] {
		if s.ok && s.agentCur < high {
			return first, 0, false // dipped under memory.high: not sustained
		}
	}
	base := hist[first]
	if last.high <= base.high || last.stallUS < base.stallUS {
		return first, 0, false
	}
	elapsed := last.at.Sub(base.at)
	stall = float64(last.stallUS-base.stallUS) / float64(elapsed.Microseconds())
	return first, stall, stall >= minStall
}

func (w *watcher) trimHistory() {
	if len(w.hist) > 2 {
		w.hist = w.hist[len(w.hist)-2:]
	}
}

// checkKills reports pressure kills whose victim exited, and escalates to SIGKILL (or, with
// AgentOOMGroup, to cgroup.kill of the victim's leaf) after the grace period.
func (w *watcher) checkKills(ctx context.Context) {
	for pid, k := range w.kills {
		if exited(k.pidfd) {
			sig := "SIGTERM"
			if k.escalated {
				sig = "SIGKILL"
			}
			unix.Close(k.pidfd)
			delete(w.kills, pid)
			delete(w.procs, pid)
			w.emit(ctx, PressureKill{Victim: k.victim, Signal: sig, Stall: k.stall, Window: w.cfg.PressureWindow})
			continue
		}
		if !k.escalated && time.Now().After(k.deadline) {
			k.escalated = true
			var err error
			if w.cfg.Limits.AgentOOMGroup && k.victim.Leaf != "" {
				err = writeFile(w.t.Dir(AgentsDir+"/"+k.victim.Leaf), "cgroup.kill", "1")
			} else {
				err = unix.PidfdSendSignal(k.pidfd, unix.SIGKILL, nil, 0)
			}
			if err != nil {
				w.warn(ctx, fmt.Errorf("pressure kill of pid %d: SIGKILL: %w", pid, err))
			}
		}
	}
}

// monotonic reads CLOCK_MONOTONIC, the clock of the kernel's and journald's timestamps.
func monotonic() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// exited polls a pidfd: it becomes readable when the process exits (pidfd_open(2)).
func exited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

func (w *watcher) closeKills() {
	for _, k := range w.kills {
		unix.Close(k.pidfd)
	}
}

// removeEmptyLeaves removes agent leaves whose processes all exited.
func (w *watcher) removeEmptyLeaves(ctx context.Context) {
	for _, leaf := range w.t.agentLeaves() {
		rel := AgentsDir + "/" + leaf
		if pop, err := w.t.Populated(rel); err != nil || pop {
			continue
		}
		if err := unix.Rmdir(w.t.Dir(rel)); err != nil {
			if !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOENT) {
				w.warn(ctx, &Error{Path: w.t.Dir(rel), Err: err})
			}
			continue
		}
		delete(w.leaves, leaf)
		w.emit(ctx, LeafRemoved{Leaf: leaf})
	}
}
