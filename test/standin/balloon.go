package main

import (
	"context"
	"fmt"
	"time"
)

// balloonTick is how often a balloon grows; at 64M/s a step is 3.2 MiB.
const balloonTick = 50 * time.Millisecond

// maxStep bounds one grow: a balloon that fell behind its schedule (its page faults starved on a
// loaded host: one guest's balloon started 258 s late) catches up in steps of this size, not in one
// mmap of everything due, which the kernel's overcommit heuristic refuses with ENOMEM once it is
// larger than RAM (mm/util.c __vm_enough_memory): the tool then dies of its own error instead of
// the memory limit the test is about.
const maxStep = 64 << 20

// inflate calls grow with the bytes due, so that rate bytes per second have been asked for since
// the start, until limit bytes (0: until ctx ends) and returns the total. The schedule follows the
// clock, not the number of steps, so slow page faults (a host under pressure) delay growth but do
// not lower the average rate below what the host allows. It returns grow's first error, or
// ctx's.
func inflate(ctx context.Context, rate, limit int64, tick time.Duration, grow func(n int64) error) (int64, error) {
	if rate <= 0 {
		return 0, fmt.Errorf("rate %d: must be positive", rate)
	}
	if limit < 0 {
		return 0, fmt.Errorf("limit %d: must not be negative", limit)
	}
	start := time.Now()
	var total int64
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		due := int64(float64(rate) * time.Since(start).Seconds())
		if due < 0 { // overflow after a very long time at a huge rate
			due = limit
		}
		if limit > 0 && due > limit {
			due = limit
		}
		n := due - total
		if n > maxStep {
			n = maxStep
		}
		if n > 0 {
			if err := grow(n); err != nil {
				return total, err
			}
			total += n
		}
		if limit > 0 && total >= limit {
			return total, nil
		}
		if total+maxStep <= due {
			// Still behind: the next step at once, not at the next tick.
			if err := ctx.Err(); err != nil {
				return total, err
			}
			continue
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return total, ctx.Err()
		}
	}
}
