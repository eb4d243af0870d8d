// Package cgroup manages the cgroup v2 subtree t3-supervise gets from systemd (Delegate=yes):
//
//	<unit cgroup>            systemd's; we write only its cgroup.subtree_control
//	 ├─ supervisor/          t3-supervise itself (leaf)
//	 └─ workload/            memory.max, memory.swap.max=0: the user's budget
//	     ├─ server/          t3 serve (leaf): memory.low, user.oomd_avoid=1
//	     └─ agents/          memory.high, pids.max: throttling, early kills and fork limits hit agents, never the server
//	         └─ <pid>-<start>/  one leaf per agent process tree
//
// Every change is computed first as data (Plan, LeafSteps): a list of mkdir, move and write
// steps that --dry-run prints and a real run applies through one function, so the two cannot
// drift apart.
//
// Where things are: the limits as data, plan.go; the watch's loop, watch_linux.go, and each of its
// mechanisms in its own file (placement place_linux.go, process samples sample_linux.go, OOM
// victims oom_linux.go, pressure kills kill_linux.go, empty leaves cleanup_linux.go, the full look
// and its sweep look_linux.go, the inotify instance notify_linux.go); the pressure
// policy and victim choice, pure and table-tested, pressure.go; the watch's events, events.go.
//
// Kernel and systemd rules this package keeps:
//
//   - systemd owns the attributes of the unit's own cgroup; a delegatee may only create children
//     and write cgroup.procs, cgroup.threads and cgroup.subtree_control there
//     (https://systemd.io/CGROUP_DELEGATION/). So limits go on workload/, which we create.
//   - "No internal processes": a cgroup with controllers enabled in cgroup.subtree_control may
//     not hold processes itself (cgroup-v2.rst, "No Internal Process Constraint"), so the
//     supervisor moves itself into supervisor/ before enabling controllers, or the kernel
//     answers EBUSY.
//   - containerd/cgroups' NewManager/NewChild with resources enable controllers in every
//     ancestor's subtree_control, systemd's slices included, and write -1 where the kernel wants
//     "max" (memory.max rejects "-1" with EINVAL). We use its Manager for reading, moving and
//     killing, and write limits ourselves.
//   - Its EventChan costs one inotify instance per cgroup (fs.inotify.max_user_instances is
//     128 per user by default) and stops when the cgroup empties. memory.events is hierarchical
//     and the kernel notifies every ancestor's file (mm/memcontrol.c, memcg_memory_event), so we
//     watch the two parents with one inotify instance instead of every leaf. The same instance
//     watches the limit files the plan wrote, the policed cgroup.procs and the directories a
//     cgroup can be made in (notify_linux.go): a write(2) raises IN_MODIFY on any file
//     (vfs_write, fsnotify_modify), so the guard and the police run when something changed and
//     at a sweep every second (look_linux.go), not at every 100 ms look.
//   - A PSI trigger on agents/memory.pressure (psi.go chooses it, psi_linux.go arms and polls
//     it) wakes the watch when pressure builds, so the samples may slow down while nothing is
//     near a limit. The kernel takes windows of 500 ms to 10 s, and from a writer without
//     CAP_SYS_RESOURCE (the unit's user) only multiples of 2 s; anything else gets EINVAL, a
//     file the writer does not own EACCES. Then the watch samples as before and says why.
//   - process_mrelease(2) (mrelease_linux.go, Linux 5.15) reaps a victim's memory right after
//     the kill, so a slow exit does not keep the workload full (and a second victim in line).
package cgroup
