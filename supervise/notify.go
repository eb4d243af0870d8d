package supervise

import (
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier tells the service manager how the supervised server is doing, by the sd_notify(3)
// protocol. Every notification of the supervisor goes through one Notifier, so that a test can
// hand in a recorder and a real run sends to systemd.
type Notifier interface {
	// Ready says that start-up is complete (READY=1: systemctl start returns, units ordered
	// After= start) and sets the status line, in one datagram.
	Ready(status string)
	// Status sets the one line `systemctl status` shows (STATUS=).
	Status(status string)
	// Watchdog says the server is alive (WATCHDOG=1: WatchdogSec= starts over) and sets the
	// status line, in one datagram.
	Watchdog(status string)
	// ExtendTimeout asks for d more before the start-up timeout (TimeoutStartSec=) fires
	// (EXTEND_TIMEOUT_USEC=, systemd 236 and later).
	ExtendTimeout(d time.Duration)
	// Stopping says the supervisor began stopping the server (STOPPING=1): systemctl status
	// shows "deactivating" rather than a running unit while the grace period runs.
	Stopping()
}

// SystemdNotifier is the Notifier of a real run: it sends each notification as one datagram to
// $NOTIFY_SOCKET, which systemd sets for Type=notify units, with go-systemd's daemon.SdNotify.
// Without NOTIFY_SOCKET (not started by systemd, or Type=simple) every call is a no-op.
//
// Errors are dropped, as sd_notify(3) recommends for the return value: a notification that
// does not arrive cannot be sent another way, and systemd's own timeouts (TimeoutStartSec=,
// WatchdogSec=) act on a supervisor whose notifications never arrive. NOTIFY_SOCKET stays set
// (unsetEnvironment false): the supervisor notifies for its whole life, and BuildEnv keeps it
// from the child.
type SystemdNotifier struct{}

func (SystemdNotifier) send(state string) { _, _ = daemon.SdNotify(false, state) }

// Ready sends READY=1 and STATUS=.
func (n SystemdNotifier) Ready(status string) {
	n.send(daemon.SdNotifyReady + "\nSTATUS=" + status)
}

// Status sends STATUS=.
func (n SystemdNotifier) Status(status string) { n.send("STATUS=" + status) }

// Watchdog sends WATCHDOG=1 and STATUS=.
func (n SystemdNotifier) Watchdog(status string) {
	n.send(daemon.SdNotifyWatchdog + "\nSTATUS=" + status)
}

// ExtendTimeout sends EXTEND_TIMEOUT_USEC=, in microseconds as sd_notify(3) asks.
func (n SystemdNotifier) ExtendTimeout(d time.Duration) {
	n.send(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", d.Microseconds()))
}

// Stopping sends STOPPING=1.
func (n SystemdNotifier) Stopping() { n.send(daemon.SdNotifyStopping) }
