//go:build linux

package cgroup

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The watch's one inotify instance (fs.inotify.max_user_instances is 128 per user, shared with
// everything else the user runs). It carries two kinds of watches:
//
//   - memory.events of workload/ and agents/: the kernel raises IN_MODIFY on them when their
//     counters change, for the cgroup and each ancestor (cgroup_file_notify in
//     memcg_memory_event). They wake onMemoryEvents (oom_linux.go).
//   - the subtree's shape and limits (look_linux.go): IN_MODIFY on every guarded limit file and
//     on the policed cgroup.procs (vfs_write calls fsnotify_modify after any write(2) that wrote,
//     cgroupfs included), IN_ATTRIB on the limit files (chmod: notify_change, fsnotify_change),
//     IN_CREATE on the directories a foreign cgroup could be made in (vfs_mkdir,
//     fsnotify_mkdir). They wake a full look at once. The kernel itself notifies none of these
//     files (kernfs_notify is for the *.events files and cgroup.events), so an idle subtree
//     raises nothing.
//
// The reader sorts events by watch descriptor: the two memory.events watches are added first and
// never change, so any other descriptor is a look's. A queue overflow (IN_Q_OVERFLOW) wakes both.
type notifier struct {
	fd   int
	f    *os.File
	mem  map[int32]bool // watch descriptors of the memory.events files
	memC chan struct{}  // memory.events changed (coalesced)
	look chan struct{}  // a watched file or directory of the subtree changed (coalesced)
}

// lookMask are the events on the limit files and cgroup.procs that wake a look; dirMask those on
// the directories. IN_MOVED_TO: a rename into the directory (cgroup2 refuses to rename a cgroup,
// cgroup_rename, but a plain tree does not). IN_IGNORED (always reported) says a watched file
// went (its controller taken out of the parent's subtree_control): a look re-arms what comes back.
const (
	lookMask = unix.IN_MODIFY | unix.IN_ATTRIB
	dirMask  = unix.IN_CREATE | unix.IN_MOVED_TO
)

// newNotifier makes the instance and watches memFiles (memory.events of workload/ and agents/)
// before its reader starts, so the reader's set of them never changes.
func newNotifier(memFiles ...string) (*notifier, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	n := &notifier{
		fd: fd, f: os.NewFile(uintptr(fd), "inotify"), // nonblocking: reads park the goroutine, Close wakes it
		mem: map[int32]bool{}, memC: make(chan struct{}, 1), look: make(chan struct{}, 1),
	}
	for _, p := range memFiles {
		wd, err := unix.InotifyAddWatch(fd, p, unix.IN_MODIFY)
		if err != nil {
			n.f.Close()
			return nil, &Error{Path: p, Err: fmt.Errorf("inotify_add_watch: %w", err)}
		}
		n.mem[int32(wd)] = true
	}
	go n.read()
	return n, nil
}

// newNotifier is the watch's instance: memory.events of workload/ and agents/ watched.
func (t *Tree) newNotifier() (*notifier, error) {
	return newNotifier(t.Dir(WorkloadDir+"/memory.events"), t.Dir(AgentsDir+"/memory.events"))
}

func (n *notifier) read() {
	buf := make([]byte, 256*unix.SizeofInotifyEvent)
	for {
		r, err := n.f.Read(buf)
		if err != nil {
			return
		}
		mem, look := false, false
		for off := 0; off+unix.SizeofInotifyEvent <= r; {
			wd := int32(binary.NativeEndian.Uint32(buf[off:]))
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
			off += unix.SizeofInotifyEvent + nameLen
			switch {
			case mask&unix.IN_Q_OVERFLOW != 0:
				mem, look = true, true
			case n.mem[wd]:
				mem = true
			default:
				look = true
			}
		}
		if mem {
			poke(n.memC)
		}
		if look {
			poke(n.look)
		}
	}
}

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// arm watches p for mask (a watch on the same inode is updated in place, inotify(7)). It
// reports whether the watch is in place; a file that cannot be watched (gone, made unreadable:
// inotify_add_watch needs read access) is left to the next look and the sweep.
func (n *notifier) arm(p string, mask uint32) bool {
	if n == nil {
		return false
	}
	_, err := unix.InotifyAddWatch(n.fd, p, mask)
	return err == nil
}

func (n *notifier) close() {
	if n != nil {
		n.f.Close()
	}
}
