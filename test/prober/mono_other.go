//go:build !linux

package main

import "errors"

// readMonoClock: the samples are put next to journald's monotonic timestamps, a Linux clock.
func readMonoClock() (monoClock, error) {
	return monoClock{}, errors.New("needs Linux's CLOCK_MONOTONIC")
}
