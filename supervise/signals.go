package supervise

import (
	"os"
	"os/signal"
	"syscall"
)

// Signals is the supervisor's subscription to the signals an operator or systemd sends.
type Signals struct {
	// Stop receives SIGTERM, SIGINT and SIGQUIT: stop the child and exit. SIGQUIT is a stop too:
	// Go's default for it is a goroutine dump and exit 2, which would end the supervisor in the
	// middle of everything.
	Stop <-chan os.Signal
	// Reload receives SIGHUP: re-read credentials. It is not for the child (see the caller).
	Reload <-chan os.Signal
	// Upgrade receives SIGUSR2 (the unit's ExecReload=, systemctl reload): an operator asks for
	// a restart onto the installed binary the next time the user is idle. Not for the child either.
	Upgrade <-chan os.Signal
	// Child receives SIGCHLD, on which a subreaper reaps its orphans.
	Child <-chan os.Signal

	chans []chan os.Signal
}

// Notify subscribes to an explicit list of signals, never to all of them: Go's runtime sends
// itself SIGURG for goroutine preemption, and a catch-all subscription floods the channel
// (consul-template #1548 lost a SIGTERM that way). Stop and Reload are separate channels so a
// storm of SIGHUPs cannot crowd out a SIGTERM; os/signal drops a signal rather than block when a
// channel is full, which is harmless for repeats of the same signal.
func Notify() *Signals {
	stop := make(chan os.Signal, 2)
	reload := make(chan os.Signal, 1)
	upgrade := make(chan os.Signal, 1)
	child := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	signal.Notify(reload, syscall.SIGHUP)
	// Subscribed with the others, before anything slow: SIGUSR2's default action ends the
	// process (signal(7)), and a reload must never be what kills a supervisor.
	signal.Notify(upgrade, syscall.SIGUSR2)
	signal.Notify(child, syscall.SIGCHLD)
	return &Signals{Stop: stop, Reload: reload, Upgrade: upgrade, Child: child, chans: []chan os.Signal{stop, reload, upgrade, child}}
}

// Close ends the subscription; the signals get their default behaviour back.
func (s *Signals) Close() {
	for _, c := range s.chans {
		signal.Stop(c)
	}
}

// SurviveBrokenPipe makes a write to a closed stdout or stderr fail with EPIPE instead of killing
// the process: Go's runtime exits on SIGPIPE from fds 1 and 2 unless the program subscribes to it
// (os/signal, "SIGPIPE"). The supervisor's stderr is a log pipe that may close (a terminal gone,
// a pipe reader ended); dying of that would leave t3 behind. A subscription, unlike
// signal.Ignore, is not inherited: exec resets a handled signal to its default, so t3 and its
// tools keep the usual SIGPIPE behaviour (an ignored one would survive exec, execve(2)).
func SurviveBrokenPipe() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}
