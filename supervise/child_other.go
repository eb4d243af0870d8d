//go:build !linux

package supervise

import (
	"os"
	"syscall"
)

func sysProcAttr(cgroup *os.File) *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
