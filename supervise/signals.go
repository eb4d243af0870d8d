package supervise

import (
	"os"
	"os/signal"
	"syscall"
)

// Signals is the supervisor's subscription to the signals an operator or systemd sends.
type Signals struct {
	// Stop receives SIGTERM and SIGINT: stop the child and exit.
	Stop <-chan os.Signal
	// Reload receives SIGHUP: forward it to the child (and re-read credentials).
	Reload <-chan os.Signal
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
	child := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	signal.Notify(reload, syscall.SIGHUP)
	signal.Notify(child, syscall.SIGCHLD)
	return &Signals{Stop: stop, Reload: reload, Child: child, chans: []chan os.Signal{stop, reload, child}}
}

// Close ends the subscription; the signals get their default behaviour back.
func (s *Signals) Close() {
	for _, c := range s.chans {
		signal.Stop(c)
	}
}
