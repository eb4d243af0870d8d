package supervise

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// listenNotify stands in for systemd: a unixgram socket in a temporary directory, named by
// NOTIFY_SOCKET, as go-systemd's own daemon tests do.
func listenNotify(t *testing.T) *net.UnixConn {
	t.Helper()
	addr := &net.UnixAddr{Name: filepath.Join(t.TempDir(), "notify.sock"), Net: "unixgram"}
	conn, err := net.ListenUnixgram("unixgram", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", addr.Name)
	return conn
}

// TestSystemdNotifierSendsOneDatagramEach: every call is one datagram with exactly the
// assignments sd_notify(3) names, READY=1 and WATCHDOG=1 together with their STATUS= so that
// systemd never sees the one without the other.
func TestSystemdNotifierSendsOneDatagramEach(t *testing.T) {
	conn := listenNotify(t)
	var n Notifier = SystemdNotifier{}
	for _, tc := range []struct {
		send func()
		want string
	}{
		{func() { n.ExtendTimeout(15 * time.Second) }, "EXTEND_TIMEOUT_USEC=15000000"},
		{func() { n.Ready("t3 serve pid 42") }, "READY=1\nSTATUS=t3 serve pid 42"},
		{func() { n.Status("t3 serve pid 42; last oom_kill") }, "STATUS=t3 serve pid 42; last oom_kill"},
		{func() { n.Watchdog("t3 serve pid 42") }, "WATCHDOG=1\nSTATUS=t3 serve pid 42"},
		{func() { n.Stopping() }, "STOPPING=1"},
	} {
		tc.send()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %q: %v", tc.want, err)
		}
		if got := string(buf[:k]); got != tc.want {
			t.Errorf("datagram %q, want %q", got, tc.want)
		}
	}
}
