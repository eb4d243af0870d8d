package cgroup

import (
	"fmt"
	"time"
)

// How the watch learns that agents/ is stalled on memory (PSIMode.Mode).
const (
	// PSITrigger: the kernel wakes the watch (a PSI trigger on agents/memory.pressure,
	// Documentation/accounting/psi.rst "Userspace monitor usage"); while nothing is near a
	// limit, the watch samples only at the slow idle pace (IdleSampleInterval).
	PSITrigger = "trigger"
	// PSISampling: the watch reads memory.pressure at every sample (--sample-interval), as
	// before triggers: no trigger was possible, or none was needed (the pressure kill is off).
	PSISampling = "sampling"
)

// PSIMode is the mode the watch runs in and why, for --dry-run and `status`.
type PSIMode struct {
	Mode   string `json:"psi_mode"`
	Reason string `json:"psi_mode_reason"`
}

// The kernel's limits on a trigger's window (kernel/sched/psi.c, psi_trigger_create): 500 ms to
// 10 s, and for a writer without CAP_SYS_RESOURCE a multiple of 2 s (since Linux 6.5, commit
// d82caa273565 "sched/psi: Allow unprivileged polling of N*2s period"; Debian 12's 6.1 kernel
// behaves the same: a delegated user's 500 ms and 1 s windows get EINVAL, 2 s to 10 s in steps of
// 2 s work). Unprivileged triggers are checked by the 2 s averaging work, so they fire up to 2 s
// late; that is fine for a wake-up, the decision still rests on samples.
const (
	psiWindowMin        = 500 * time.Millisecond
	psiWindowMax        = 10 * time.Second
	psiUnprivilegedStep = 2 * time.Second
)

// PSITriggerSpec is one PSI trigger: wake when the tasks of the cgroup were stalled ("some")
// for Stall within any Window.
type PSITriggerSpec struct {
	Stall  time.Duration
	Window time.Duration
}

// String is the line written to memory.pressure, in microseconds: "some 2500000 10000000".
func (s PSITriggerSpec) String() string {
	return fmt.Sprintf("some %d %d", s.Stall.Microseconds(), s.Window.Microseconds())
}

// PSITriggerSpecs chooses the triggers to try, best first, for the pressure kill's window and
// stall share: the window itself (cut to the kernel's 10 s) for a privileged writer, then the
// same rounded down to a multiple of 2 s for an unprivileged one (the unit runs as the user,
// User=%i), each with the same share of its window as threshold. The trigger only wakes the
// watch; the kill is still decided on samples (pressureDecision), and memory.events and the
// 100 ms look wake the watch too, so a trigger that fires a little early or late costs nothing.
// None, with a reason, when no window fits (under 500 ms); reason is also set when only the
// privileged one fits (under 2 s), should the kernel refuse it.
func PSITriggerSpecs(window time.Duration, share float64) (specs []PSITriggerSpec, reason string) {
	if window <= 0 {
		return nil, "the pressure kill is off (--pressure-window 0)"
	}
	w := min(window, psiWindowMax)
	if w < psiWindowMin {
		return nil, fmt.Sprintf("--pressure-window %v is shorter than the 500 ms a PSI trigger's window needs", window)
	}
	spec := func(w time.Duration) PSITriggerSpec {
		// The kernel refuses a threshold of 0 (and one longer than the window).
		stall := min(max(time.Duration(share*float64(w)).Truncate(time.Microsecond), time.Microsecond), w)
		return PSITriggerSpec{Stall: stall, Window: w}
	}
	specs = append(specs, spec(w))
	if u := w.Truncate(psiUnprivilegedStep); u >= psiUnprivilegedStep {
		if u != w {
			specs = append(specs, spec(u))
		}
	} else {
		reason = fmt.Sprintf("--pressure-window %v is shorter than the 2 s an unprivileged PSI trigger's window needs", window)
	}
	return specs, reason
}

// IdleSampleInterval is the sample pace in trigger mode while nothing is near a limit: the
// kernel wakes the watch when pressure starts, so only the slow chores remain (removing empty
// leaves, the process refresh that names OOM victims), at the pace the refresh had before.
func IdleSampleInterval(sample time.Duration) time.Duration { return 5 * sample }
