//go:build linux

package cgroup

import (
	"context"
	"errors"

	"golang.org/x/sys/unix"
)

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
