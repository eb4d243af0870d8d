package cgroup

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when a test says so. Its tickers' channels are
// unbuffered: Advance returns once the watch's loop has taken every tick that fell due, so the
// test knows the loop ran them.
type fakeClock struct {
	t       testing.TB
	mu      sync.Mutex
	now     time.Time
	tickers []*fakeTicker
}

type fakeTicker struct {
	clock   *fakeClock
	c       chan time.Time
	every   time.Duration
	next    time.Time
	stopped bool
}

func newFakeClock(t testing.TB) *fakeClock { return &fakeClock{t: t, now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTicker(d time.Duration) Ticker {
	c.mu.Lock()
	defer c.mu.Unlock()
	tk := &fakeTicker{clock: c, c: make(chan time.Time), every: d, next: c.now.Add(d)}
	c.tickers = append(c.tickers, tk)
	return tk
}

func (t *fakeTicker) C() <-chan time.Time { return t.c }
func (t *fakeTicker) Stop() {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.stopped = true
}
func (t *fakeTicker) Reset(d time.Duration) {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.every, t.next = d, t.clock.now.Add(d)
}

// Advance moves the clock by d, delivering each tick that falls due in time order, the clock
// reading the tick's time while it is taken.
func (c *fakeClock) Advance(d time.Duration) {
	c.t.Helper()
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var due *fakeTicker
		for _, tk := range c.tickers {
			if !tk.stopped && !tk.next.After(end) && (due == nil || tk.next.Before(due.next)) {
				due = tk
			}
		}
		if due == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		c.now = due.next
		due.next = due.next.Add(due.every)
		at := c.now
		c.mu.Unlock()
		select {
		case due.c <- at:
		case <-time.After(10 * time.Second): // a bound for a broken test, not a timing decision
			c.t.Fatalf("the watch's loop took no tick for 10 s at %v", at)
		}
	}
}
