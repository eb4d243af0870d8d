//go:build linux

package cgroup

import (
	"testing"
	"time"
)

// The pressure kill's decision, from samples: a failed read inside a window (a zero where a
// counter should be) must neither kill nor be taken for sustained pressure. Before, a window
// that ended on a failed PSI read computed 0 - total as an unsigned number: a stall of about
// 10^13 and a kill; one that began on one took the whole counter since boot for the window's.
func TestPressureDecision(t *testing.T) {
	const high = 300 << 20
	t0 := time.Unix(1_000_000, 0)
	// s: a complete sample at second sec, with the high counter, the stall total in seconds
	// and agents' memory.current.
	s := func(sec int, highEv uint64, stallS float64, cur uint64) sample {
		return sample{at: t0.Add(time.Duration(sec) * time.Second), high: highEv, stallUS: uint64(stallS * 1e6), agentCur: cur, ok: true}
	}
	failed := func(sec int) sample { return sample{at: t0.Add(time.Duration(sec) * time.Second)} }
	// Only the PSI read failed: memory.current and memory.events were read.
	noPSI := func(sec int, highEv uint64, cur uint64) sample {
		return sample{at: t0.Add(time.Duration(sec) * time.Second), high: highEv, agentCur: cur}
	}
	over, under := uint64(high+1), uint64(high-1)
	for _, tc := range []struct {
		name  string
		hist  []sample
		kill  bool
		stall float64 // when kill
	}{
		{"sustained: 50% stalled over 10 s", []sample{s(0, 10, 100, over), s(5, 20, 102.5, over), s(10, 30, 105, over)}, true, 0.5},
		{"not yet a window", []sample{s(0, 10, 100, over), s(5, 20, 105, over)}, false, 0},
		{"dipped under memory.high", []sample{s(0, 10, 100, over), s(5, 20, 102, under), s(10, 30, 105, over)}, false, 0},
		{"high counter did not move", []sample{s(0, 10, 100, over), s(10, 10, 105, over)}, false, 0},
		{"stalled too little", []sample{s(0, 10, 100, over), s(10, 30, 101, over)}, false, 0},
		// The failed reads:
		{"the window's last read failed", []sample{s(0, 10, 100, over), s(5, 20, 100.1, over), failed(10)}, false, 0},
		{"the window's first read failed", []sample{failed(0), s(5, 20, 100, over), s(10, 30, 100.1, over)}, false, 0},
		{"the window's last PSI read failed", []sample{s(0, 10, 100, over), s(5, 20, 100.1, over), noPSI(10, 30, over)}, false, 0},
		{"the window's first PSI read failed", []sample{noPSI(0, 10, over), s(5, 20, 100, over), s(10, 30, 100.1, over)}, false, 0},
		{"one failed read in the middle", []sample{s(0, 10, 100, over), failed(5), s(10, 30, 105, over)}, true, 0.5},
		{"a failed read, then a whole window", []sample{failed(0), s(1, 10, 100, over), s(11, 30, 105, over)}, true, 0.5},
		{"the stall counter went backwards", []sample{s(0, 10, 100, over), s(10, 30, 1, over)}, false, 0},
		{"every read failed", []sample{failed(0), failed(5), failed(10), failed(15)}, false, 0},
	} {
		first, stall, kill := pressureDecision(tc.hist, 10*time.Second, high, 0.25)
		if kill != tc.kill || (kill && (stall < tc.stall-1e-9 || stall > tc.stall+1e-9)) || stall > 1 || stall < 0 {
			t.Errorf("%s: kill %v stall %v, want kill %v stall %v", tc.name, kill, stall, tc.kill, tc.stall)
		}
		if first < 0 || first >= len(tc.hist) {
			t.Errorf("%s: first %d out of range", tc.name, first)
		}
	}
}
