package main

import (
	"context"
	"fmt"
	"time"
)

// balloonTick is how often a balloon grows; at 64M/s a step is 3.2 MiB.
const balloonTick = 50 * time.Millisecond

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
		if n := due - total; n > 0 {
			if err := grow(n); err != nil {
				return total, err
			}
			total += n
		}
		if limit > 0 && total >= limit {
			return total, nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return total, ctx.Err()
		}
	}
}
