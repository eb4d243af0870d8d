//go:build !linux

// Command t3-supervise runs only on Linux: it is built around cgroup v2, /proc, prctl and
// systemd. Elsewhere it says so, so that the module still builds for a developer's laptop.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "t3-supervise: runs on Linux only (cgroup v2, /proc, systemd)")
	os.Exit(70)
}
