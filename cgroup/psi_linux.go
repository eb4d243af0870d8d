//go:build linux

package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// PressureMode: the watch says once, at its start, how it learns of memory pressure.
type PressureMode struct{ PSIMode }

func (PressureMode) cgroupEvent() {}

// psiTrigger is an armed PSI trigger: the open memory.pressure file with the trigger written, a
// goroutine polling it, and what the watch's pace needs.
type psiTrigger struct {
	wake     chan struct{} // a value when the trigger fired (coalesced)
	stop     func()
	woke     time.Time     // the last time it fired
	interval time.Duration // the sample ticker's current period
}

// armPSITrigger opens dir's memory.pressure and writes the first spec the kernel accepts: the
// file stays open, the trigger lives as long as the file descriptor (psi.rst: "the trigger is
// destroyed when the file descriptor is closed"). A trigger can be written once per open file
// (a second write gets EBUSY), so each try opens the file again. EINVAL: the kernel refused the
// window (an unprivileged writer's window that is no multiple of 2 s); EACCES, EPERM: the file
// is not ours to write, no other spec would help. The last error says why no spec was armed.
func armPSITrigger(path string, specs []PSITriggerSpec) (fd int, spec PSITriggerSpec, err error) {
	for _, s := range specs {
		fd, err = unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			return -1, s, &Error{Path: path, Err: err}
		}
		// Only cgroupfs takes a trigger: on anything else (a test's fake tree) the write would
		// land in a file that the samples then read.
		var st unix.Statfs_t
		if err = unix.Fstatfs(fd, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
			unix.Close(fd)
			if err == nil {
				err = errors.New("not on a cgroup2 file system")
			}
			return -1, s, &Error{Path: path, Err: err}
		}
		// psi.rst writes the trigger with its terminating NUL (write(fd, trig, strlen(trig) + 1));
		// the kernel parses up to it.
		if _, err = unix.Write(fd, append([]byte(s.String()), 0)); err == nil {
			return fd, s, nil
		}
		unix.Close(fd)
		err = &Error{Path: path, Value: s.String(), Err: err}
		if !errors.Is(err, unix.EINVAL) {
			break
		}
	}
	return -1, PSITriggerSpec{}, err
}

// choosePSI decides the watch's mode and, in trigger mode, arms the trigger on dir's
// memory.pressure (named as agents/ in the reason: a dry run probes elsewhere). fd is -1 in
// sampling mode.
func (t *Tree) choosePSI(dir string, cfg WatchConfig) (fd int, mode PSIMode) {
	sampling := func(why string) (int, PSIMode) { return -1, PSIMode{Mode: PSISampling, Reason: why} }
	switch {
	case cfg.PSITriggerOff:
		return sampling("--psi-trigger off")
	case !cfg.Limits.MemoryHigh.IsSet() || cfg.Limits.MemoryHigh.IsMax():
		return sampling("the pressure kill is off (--memory-high max)")
	}
	specs, why := PSITriggerSpecs(cfg.PressureWindow, cfg.PressureStall)
	if len(specs) == 0 {
		return sampling(why)
	}
	path := t.Dir(dir + "/memory.pressure")
	fd, spec, err := armPSITrigger(path, specs)
	if err != nil {
		if why != "" {
			return sampling(fmt.Sprintf("the kernel refused the PSI trigger (%v); %s", err, why))
		}
		return sampling(fmt.Sprintf("the kernel refused the PSI trigger: %v", err))
	}
	return fd, PSIMode{Mode: PSITrigger, Reason: fmt.Sprintf("%q on %s/memory.pressure", spec.String(), AgentsDir)}
}

// ProbePSI says which mode a real run's watch would run in, for --dry-run, without touching the
// real subtree: it makes a temporary cgroup under the unit's own, owned like agents/ will be (by
// whoever runs the supervisor), tries the trigger there, and removes it. memory.pressure is one
// of every cgroup's base files, with or without the memory controller.
func (t *Tree) ProbePSI(cfg WatchConfig) PSIMode {
	dir, err := os.MkdirTemp(t.Dir("."), ".t3-supervise-psi-probe-")
	if err != nil {
		return PSIMode{Mode: PSISampling, Reason: fmt.Sprintf("could not probe for a PSI trigger: %v", err)}
	}
	defer unix.Rmdir(dir)
	fd, mode := t.choosePSI(filepath.Base(dir), cfg)
	if fd >= 0 {
		unix.Close(fd) // the trigger goes with it, and the cgroup can be removed
	}
	return mode
}

// startPSI arms the trigger on agents/ when the pressure kill is on and reports the mode; nil in
// sampling mode. A goroutine polls the trigger for POLLPRI (psi.rst) and sends a coalesced
// wake-up; POLLERR means the cgroup went away. The runtime's netpoller does not wait for
// POLLPRI, so the goroutine sits in poll(2) on its own thread, with a pipe to end it.
func (w *watcher) startPSI(ctx context.Context) *psiTrigger {
	if w.cfg.PressureWindow <= 0 {
		return nil // nothing to say: the pressure kill is off, and plan/status say so already
	}
	fd, mode := w.t.choosePSI(AgentsDir, w.cfg)
	w.emit(ctx, PressureMode{mode})
	if fd < 0 {
		return nil
	}
	var stop [2]int
	if err := unix.Pipe2(stop[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		unix.Close(fd)
		w.warn(ctx, fmt.Errorf("psi trigger: pipe2: %w; sampling instead", err))
		return nil
	}
	p := &psiTrigger{wake: make(chan struct{}, 1), woke: w.clock.Now(), interval: w.cfg.SampleInterval}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}, {Fd: int32(stop[0]), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err != nil {
				if err == unix.EINTR {
					continue
				}
				return
			}
			if fds[1].Revents != 0 || fds[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0 {
				return
			}
			if fds[0].Revents&unix.POLLPRI != 0 {
				select {
				case p.wake <- struct{}{}:
				default:
				}
			}
		}
	}()
	p.stop = func() {
		unix.Write(stop[1], []byte{0})
		<-done
		unix.Close(fd)
		unix.Close(stop[0])
		unix.Close(stop[1])
	}
	return p
}

// psiWoke notes that the trigger fired: pressure is building in agents/, sample at full pace.
func (w *watcher) psiWoke(now time.Time) { w.psi.woke = now }

// pace sets the sample ticker's period after every turn of the watch loop. In trigger mode the
// watch samples at --sample-interval while it has a reason to (near a limit, a kill pending, the
// trigger fired within the last two windows) and at IdleSampleInterval otherwise. The pressure
// kill loses nothing: its window needs agents/ over memory.high throughout, and getting there
// raises the high counter of agents/memory.events (mm/memcontrol.c, reclaim_high), whose
// inotify wake-up makes the watch hot, so every sample of such a window is taken at full pace.
func (w *watcher) pace(tick Ticker, now time.Time) {
	p := w.psi
	if p == nil {
		return
	}
	want := w.cfg.SampleInterval
	if !w.hot && len(w.kills) == 0 && now.Sub(p.woke) > 2*w.cfg.PressureWindow {
		want = IdleSampleInterval(w.cfg.SampleInterval)
	}
	if want != p.interval {
		tick.Reset(want)
		p.interval = want
	}
}

// sampleTick is one tick of the sample ticker. At the idle pace every sample also refreshes the
// processes, so victims are named as freshly as at the sampling mode's every fifth sample.
func (w *watcher) sampleTick(ctx context.Context, now time.Time) {
	w.sample(ctx, now)
	if p := w.psi; p != nil && !w.hot && p.interval > w.cfg.SampleInterval {
		w.quiet = 0
		w.refresh()
	}
}

func (w *watcher) stopPSI() {
	if w.psi != nil {
		w.psi.stop()
	}
}

// psiWake is the trigger's wake-up channel; nil (never ready) in sampling mode.
func (w *watcher) psiWake() <-chan struct{} {
	if w.psi == nil {
		return nil
	}
	return w.psi.wake
}
