//go:build linux

package cgroup

import (
	"context"
	"path/filepath"
	"time"
)

// The watch's looks. Every PlaceInterval (100 ms) it reads server/cgroup.procs (moveOut: no
// kernel event announces a process forked into a cgroup) and workload/memory.current. The rest —
// the limit guard (guard_linux.go), the police (police_linux.go) and the leaves the shims made
// (adoptLeaves) — is a full look of some 40 files with 8 agents, which under emulation cost more
// CPU than everything else the supervisor does. It runs when the one inotify instance
// (notify_linux.go) says a watched file changed, at once, and at the sweep, every sweepInterval.
//
// Each full look arms the watches just before it reads what they cover, so a change after the
// read raises an event and another look follows; a file that comes back new (a controller
// re-enabled in a cgroup.subtree_control brings the memory.* files below back as new inodes) is
// armed when the guard reads it. What inotify cannot see is left to the sweep:
//
//   - clone3(2) with CLONE_INTO_CGROUP starts a process in a cgroup without a write to its
//     cgroup.procs (into supervisor/, or into a foreign cgroup, whose removal an event's look
//     leaves to the sweep: policeLook);
//   - a write by a path inotify does not hook (none is known on cgroupfs; the sweep bounds the
//     cost of one being found).
//
// sweepInterval is that bound: an escape by clone3 lasts at most about a second, a drift no
// event announced as long. Both come from the user's own processes, which the workload's
// memory.max at the unit (Plan) still bounds.
const sweepInterval = time.Second

// sweepEvery is the sweep's period in place ticks.
func (w *watcher) sweepEvery() int {
	if n := int(sweepInterval / w.cfg.PlaceInterval); n > 1 {
		return n
	}
	return 1
}

// maxEventLooks bounds the full looks inotify events start between two place ticks; an event
// beyond it waits for the next tick, as every change did before. The user owns the watched
// files: an agent writing one in a loop must not turn the watch into a busy loop (each full look
// is some 40 files), and a restore raises an event of its own.
const maxEventLooks = 4

// lookEvent answers an inotify event of the look's watches.
func (w *watcher) lookEvent(ctx context.Context) {
	if w.eventLooks >= maxEventLooks {
		w.lookDue = true
		return
	}
	w.eventLooks++
	w.fullLook(ctx, false)
}

// fullLook is the look of an event, or of the sweep (sweep: empty foreign cgroups are removed
// too, policeLook). It kills strays first (one in workload/ or agents/ blocks a
// cgroup.subtree_control restore with EBUSY), then takes over new leaves, so that the guard reads
// back (and arms) their limits in the same look.
func (w *watcher) fullLook(ctx context.Context, sweep bool) {
	w.policeLook(ctx, sweep)
	w.adoptLeaves(ctx)
	w.guardLimits(ctx)
}

// armFile watches a file a look reads; armDir a directory it lists.
func (w *watcher) armFile(dir, file string) bool { return w.n.arm(filepath.Join(dir, file), lookMask) }
func (w *watcher) armDir(dir string) bool        { return w.n.arm(dir, dirMask) }
