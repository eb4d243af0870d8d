//go:build linux

package cgroup

import (
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// guardLimits reads back every limit the plan wrote and each placed leaf's own, and restores
// what drifted (guard.go). A few small reads per look, in plan order: a controller re-enabled
// in a cgroup.subtree_control brings the files below back at their defaults, and those are
// read (and restored) later in the same look.
func (w *watcher) guardLimits(ctx context.Context) {
	if len(w.cfg.Plan) == 0 {
		return
	}
	for _, s := range Guarded(w.cfg.Plan) {
		w.guard(ctx, s.Dir, s)
	}
	leafSteps := Guarded(LeafSteps(w.cfg.Limits))
	for leaf := range w.leaves {
		for _, s := range leafSteps {
			w.guard(ctx, path.Join(AgentsDir, leaf, s.Dir), s)
		}
	}
}

func (w *watcher) guard(ctx context.Context, dir string, s Step) {
	d := w.t.Dir(dir)
	key := path.Join(dir, s.File)
	armed := w.armFile(d, s.File)
	b, err := readFile(d, s.File)
	if errors.Is(err, os.ErrPermission) && w.chmodBack(d, s.File) {
		if !armed {
			w.armFile(d, s.File) // inotify_add_watch needs the read access chmodBack gave back
		}
		b, err = readFile(d, s.File)
	}
	if errors.Is(err, os.ErrNotExist) {
		// Its controller is off in the parent and the subtree_control step before this one
		// could not bring it back (said there), or this is a leaf that was just removed.
		return
	}
	if err != nil {
		w.guardWarn(ctx, key, err)
		return
	}
	got := string(b)
	restore := Drift(s, got, int64(os.Getpagesize()))
	if restore == "" {
		delete(w.guardErr, key)
		return
	}
	err = writeFile(d, s.File, restore)
	if errors.Is(err, os.ErrPermission) && w.chmodBack(d, s.File) {
		err = writeFile(d, s.File, restore)
	}
	if err != nil {
		w.guardWarn(ctx, key, err)
		return
	}
	delete(w.guardErr, key)
	w.emit(ctx, LimitRestored{File: key, Found: strings.TrimSpace(got), Restored: restore})
}

// chmodBack gives a limit file back its mode: the owner of a cgroupfs file may chmod it
// (kernfs_iop_setattr), so an agent can make one unreadable or unwritable after writing `max`
// into it, and so can the supervisor undo that. 0644 is what the kernel gives every writable
// interface file (cgroup_file_mode).
func (w *watcher) chmodBack(dir, file string) bool {
	return os.Chmod(filepath.Join(dir, file), 0o644) == nil
}

// guardWarn says a failure once per file until it changes or the file is in order again: the
// look runs on every event and at every sweep.
func (w *watcher) guardWarn(ctx context.Context, key string, err error) {
	if w.guardErr[key] == err.Error() {
		return
	}
	w.guardErr[key] = err.Error()
	w.warn(ctx, err)
}
