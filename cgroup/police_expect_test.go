//go:build linux

package cgroup

import (
	"os"
	"os/exec"
	"testing"
)

// The child the supervisor announces (the upgrade's version probe) is spared by the police;
// the same program run by anyone else, or after done, is not.
func TestExpectChildSparesOnlyTheAnnouncedChild(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	var tr Tree
	cmd := exec.Command(sleep, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	waitExec := func() bool { // until the child has exec'd sleep (exe changes at execve)
		for range 1000 {
			if l, _ := os.Readlink("/proc/" + itoa(pid) + "/exe"); l != "" && l != mustExe(t) {
				return true
			}
		}
		return false
	}
	waitExec()
	if tr.expected(pid) {
		t.Fatal("spared with nothing announced")
	}
	done := tr.ExpectChild(os.Getpid(), "/proc/self/exe", sleep)
	if !tr.expected(pid) {
		t.Fatal("the announced child is not spared")
	}
	other := tr.ExpectChild(os.Getppid(), sleep) // someone else's child
	if tr.expected(pid) {
		t.Error("spared as another process's child")
	}
	other()
	done = tr.ExpectChild(os.Getpid(), "/bin/true") // another file
	if tr.expected(pid) {
		t.Error("spared while it runs another file")
	}
	done()
	if tr.expected(pid) {
		t.Error("spared after done")
	}
}

func mustExe(t *testing.T) string {
	e, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	return e
}
