//go:build linux

package cgroup

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"t3-supervise/internal/procstat"
)

// Which process in server/ is the server.
//
// The watch moves every process in server/ but the server into agent leaves (an SDK may spawn
// agents by absolute path, around the shim). "The server" used to be the supervisor's direct
// child. A t3 started through a wrapper that does not exec (`#!/bin/sh` + `node … "$@"`, a
// version manager's shim) has the wrapper as direct child, and the real server, its child, was
// moved into an agent leaf: throttled by memory.high and the first OOM victim.
//
// The server is the process that listens on t3's port: that is what T3 Code is, and the one
// property a wrapper cannot have (it has no socket; an agent has none on that port). Other
// rules were weighed and rejected: "not an agent by name" keeps every tool the server runs (git,
// rg for its file search) in server/; "not started through a shim" misses the agents T3 spawns
// by absolute path, the very case the watch exists for; "the direct child's only child" breaks
// as soon as the server spawns before the wrapper does anything else. So, while the port is
// known and no process in server/ listens on it yet (t3 starting), the watch places only
// processes that are agents by name (comm or executable named as in AgentNames) and leaves the
// rest where they are; once the listener is found, it and its ancestors up to the direct child
// are the server, and everything else is placed as before, in the leaf of its topmost ancestor
// below the server. If the listener ends (a wrapper that restarts it), the watch looks again.
// Without a port (--port, T3CODE_PORT and T3_PORT all unset) there is nothing to recognise the
// server by, and the direct child is taken for it, as before; WatchdogSec= refuses that setup.

// resolveServer keeps w.server current: the recognised server processes (pid -> start time).
func (w *watcher) resolveServer(ctx context.Context, pids []int) {
	if w.cfg.Port <= 0 || w.cfg.ServerPID <= 0 {
		w.serverKnown = true
		return
	}
	for pid, start := range w.server {
		if st, err := procstat.Read(pid); err != nil || st.StartTime != start {
			delete(w.server, pid)
			w.serverKnown = false
		}
	}
	if w.serverKnown {
		return
	}
	inodes := listeningInodes(w.cfg.Port)
	if len(inodes) == 0 {
		return
	}
	if !slices.Contains(pids, w.cfg.ServerPID) {
		pids = append(pids, w.cfg.ServerPID)
	}
	var listeners []int
	for _, pid := range pids {
		if holdsSocket(pid, inodes) {
			listeners = append(listeners, pid)
		}
	}
	if len(listeners) == 0 {
		return
	}
	clear(w.server)
	for _, l := range listeners {
		// The listener and its ancestors in server/ up to the direct child (at most 64 levels;
		// a listener re-parented out of the chain keeps only itself).
		for cur, i := l, 0; cur > 1 && i < 64; i++ {
			st, err := procstat.Read(cur)
			if err != nil {
				break
			}
			if slices.Contains(pids, cur) {
				w.server[cur] = st.StartTime
			}
			if cur == w.cfg.ServerPID {
				break
			}
			cur = st.PPID
		}
	}
	w.serverKnown = true
	if !slices.Contains(listeners, w.cfg.ServerPID) {
		first := slices.Min(listeners)
		w.emit(ctx, ServerFound{PID: first, Comm: comm(first, ""), Wrapper: w.cfg.ServerPID,
			WrapperComm: comm(w.cfg.ServerPID, ""), Port: w.cfg.Port})
	}
}

// isServer reports whether pid is the server or one of the processes between it and the
// supervisor's direct child.
func (w *watcher) isServer(pid int) bool {
	if pid == w.cfg.ServerPID {
		return true
	}
	_, ok := w.server[pid]
	return ok
}

// agentByName reports whether pid runs one of the agent programs (by comm, or by the base name
// of its executable: a native claude's comm is claude, a Node one's is node).
func (w *watcher) agentByName(pid int) bool {
	if len(w.cfg.AgentNames) == 0 {
		return false
	}
	if slices.Contains(w.cfg.AgentNames, comm(pid, "")) {
		return true
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return err == nil && slices.Contains(w.cfg.AgentNames, filepath.Base(exe))
}

// listeningInodes returns the socket inodes listening on TCP port, IPv4 and IPv6, from
// /proc/net/tcp and /proc/net/tcp6 (proc(5)): the network namespace of the supervisor, which is
// t3's.
func listeningInodes(port int) map[uint64]bool {
	inodes := map[uint64]bool{}
	for _, p := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		for ino := range parseListeners(io.LimitReader(f, 64<<20), port) {
			inodes[ino] = true
		}
		f.Close()
	}
	return inodes
}

// tcpListen is TCP_LISTEN of include/net/tcp_states.h, as /proc/net/tcp prints the state.
const tcpListen = "0A"

// parseListeners reads the /proc/net/tcp format: a header line, then one socket per line,
// "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...",
// local_address as hex ADDR:PORT.
func parseListeners(r io.Reader, port int) map[uint64]bool {
	out := map[uint64]bool{}
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 4096), 1<<20)
	first := true
	for s.Scan() {
		if first {
			first = false
			continue
		}
		f := strings.Fields(s.Text())
		if len(f) < 10 || f[3] != tcpListen {
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || int(p) != port {
			continue
		}
		if ino, err := strconv.ParseUint(f[9], 10, 64); err == nil && ino != 0 {
			out[ino] = true
		}
	}
	return out
}

// holdsSocket reports whether pid has one of the socket inodes open (its fd links read
// "socket:[INODE]", proc(5)).
func holdsSocket(pid int, inodes map[uint64]bool) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		l, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || !strings.HasPrefix(l, "socket:[") {
			continue
		}
		if ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]"), 10, 64); err == nil && inodes[ino] {
			return true
		}
	}
	return false
}
