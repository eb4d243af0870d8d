//go:build linux

package supervise

import (
	"os"
	"syscall"
)

func sysProcAttr(cgroup *os.File) *syscall.SysProcAttr {
	// Its own process group: a Ctrl-C on a terminal reaches the supervisor alone, which decides
	// (credits: tini's -g discussion). Under systemd there is no terminal and this changes nothing.
	a := &syscall.SysProcAttr{Setpgid: true}
	if cgroup != nil {
		a.UseCgroupFD = true
		a.CgroupFD = int(cgroup.Fd())
	}
	return a
}
