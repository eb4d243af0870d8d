package cgroup

import "time"

// Clock is the time the watch runs on: its tickers, the timestamps of its samples, its grace
// periods. WatchConfig.Clock nil is the wall clock; tests step a fake one, so that no test
// sleeps for a grace period or a pressure window to pass.
type Clock interface {
	Now() time.Time
	NewTicker(d time.Duration) Ticker
}

// Ticker is a time.Ticker of a Clock.
type Ticker interface {
	C() <-chan time.Time
	Stop()
	// Reset changes the period; the next tick comes d from now (the PSI mode's pace, psi_linux.go).
	Reset(d time.Duration)
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) NewTicker(d time.Duration) Ticker { return wallTicker{time.NewTicker(d)} }

type wallTicker struct{ t *time.Ticker }

func (t wallTicker) C() <-chan time.Time   { return t.t.C }
func (t wallTicker) Stop()                 { t.t.Stop() }
func (t wallTicker) Reset(d time.Duration) { t.t.Reset(d) }
