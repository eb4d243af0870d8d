//go:build linux

package supervise

import (
	"os"
	"syscall"
)

func sysProcAttr(cgroup *os.File) *syscall.SysProcAttr {
	// Its own process group: a Ctrl-C on a terminal reaches the supervisor alone, which decides
	// (credits: tini's -g discussion). Under systemd there is no terminal and this changes nothing.
	//
	// Pdeathsig: a supervisor that dies, of whatever cause (SIGKILL included), takes t3 with it
	// instead of leaving it on its port with PPID 1 (prctl(2) PR_SET_PDEATHSIG). SIGKILL, not
	// SIGTERM: nobody is left to escalate. The kernel sends it when the *thread* that forked the
	// child exits (golang/go#27505); Child.run keeps that thread for the child's whole life.
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cgroup != nil {
		a.UseCgroupFD = true
		a.CgroupFD = int(cgroup.Fd())
	}
	return a
}
