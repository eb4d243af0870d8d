//go:build linux

package main

import (
	"time"

	"golang.org/x/sys/unix"
)

// readMonoClock reads CLOCK_MONOTONIC (clock_gettime(2)) next to time.Now.
func readMonoClock() (monoClock, error) {
	var ts unix.Timespec
	at := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return monoClock{}, err
	}
	return monoClock{at: at, mono: time.Duration(ts.Nano())}, nil
}
