//go:build !linux

package main

import (
	"fmt"
	"os"
)

// run refuses: the stand-in's processes, /proc and prctl are Linux's.
func run(argv []string) int {
	fmt.Fprintln(os.Stderr, "standin: Linux only")
	return 1
}
