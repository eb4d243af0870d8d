package cgroup

import (
	"testing"
	"time"
)

const testHigh = 300 << 20

var (
	t0          = time.Unix(1_000_000, 0)
	over, under = uint64(testHigh + 1), uint64(testHigh - 1)
	testPolicy  = PressurePolicy{Window: 10 * time.Second, MinStall: 0.25, High: testHigh, Grace: 5 * time.Second}
)

// at is a complete sample at second sec: the high counter, the stall total in seconds and agents'
// memory.current.
func at(sec float64, highEv uint64, stallS float64, cur uint64) PressureSample {
	return PressureSample{At: t0.Add(time.Duration(sec * float64(time.Second))), High: highEv, StallUS: uint64(stallS * 1e6), AgentCurrent: cur, OK: true}
}

func failedAt(sec float64) PressureSample {
	return PressureSample{At: t0.Add(time.Duration(sec * float64(time.Second)))}
}

// pressureSeries is n samples one second apart from second 0, each made by f from its second.
func pressureSeries(n int, f func(sec int) PressureSample) []PressureSample {
	var h []PressureSample
	for i := 0; i < n; i++ {
		h = append(h, f(i))
	}
	return h
}

// The decision over a history of samples. The failed reads: a failed read inside a window (a
// zero where a counter should be) must neither kill nor be taken for sustained pressure.
// Before, a window that ended on a failed PSI read computed 0 - total as an unsigned number: a
// stall of about 10^13 and a kill; one that began on one took the whole counter since boot for
// the window's.
func TestPressureDecide(t *testing.T) {
	// Only the PSI read failed: memory.current and memory.events were read.
	noPSI := func(sec float64, highEv uint64, cur uint64) PressureSample {
		return PressureSample{At: t0.Add(time.Duration(sec) * time.Second), High: highEv, AgentCurrent: cur}
	}
	for _, tc := range []struct {
		name  string
		hist  []PressureSample
		kill  bool
		stall float64 // when kill
	}{
		// A throttled balloon: over memory.high throughout, the high counter moving in bursts
		// (every other second: a throttled task sleeps up to 2 s per allocation), 60% stalled.
		{"throttled balloon", pressureSeries(12, func(s int) PressureSample { return at(float64(s), uint64(10+s/2), 100+0.6*float64(s), over) }), true, 0.6},
		// A transient spike: fully stalled for three seconds, then under memory.high again.
		{"transient spike", pressureSeries(12, func(s int) PressureSample {
			switch {
			case s < 3:
				return at(float64(s), 10, 100, under)
			case s < 6:
				return at(float64(s), uint64(10+s-2), 100+float64(s-2), over)
			}
			return at(float64(s), 13, 103, under)
		}), false, 0},
		{"too short: one sample", []PressureSample{at(0, 10, 100, over)}, false, 0},
		{"too short: less than a window", pressureSeries(10, func(s int) PressureSample { return at(float64(s), uint64(10+s), 100+float64(s), over) }), false, 0},
		{"sustained: 50% stalled over 10 s", []PressureSample{at(0, 10, 100, over), at(5, 20, 102.5, over), at(10, 30, 105, over)}, true, 0.5},
		{"dipped under memory.high", []PressureSample{at(0, 10, 100, over), at(5, 20, 102, under), at(10, 30, 105, over)}, false, 0},
		{"high counter did not move", []PressureSample{at(0, 10, 100, over), at(10, 10, 105, over)}, false, 0},
		{"stalled too little", []PressureSample{at(0, 10, 100, over), at(10, 30, 101, over)}, false, 0},
		{"the window's last read failed", []PressureSample{at(0, 10, 100, over), at(5, 20, 100.1, over), failedAt(10)}, false, 0},
		{"the window's first read failed", []PressureSample{failedAt(0), at(5, 20, 100, over), at(10, 30, 100.1, over)}, false, 0},
		{"the window's last PSI read failed", []PressureSample{at(0, 10, 100, over), at(5, 20, 100.1, over), noPSI(10, 30, over)}, false, 0},
		{"the window's first PSI read failed", []PressureSample{noPSI(0, 10, over), at(5, 20, 100, over), at(10, 30, 100.1, over)}, false, 0},
		{"one failed read in the middle", []PressureSample{at(0, 10, 100, over), failedAt(5), at(10, 30, 105, over)}, true, 0.5},
		{"a failed read, then a whole window", []PressureSample{failedAt(0), at(1, 10, 100, over), at(11, 30, 105, over)}, true, 0.5},
		{"the stall counter went backwards", []PressureSample{at(0, 10, 100, over), at(10, 30, 1, over)}, false, 0},
		{"every read failed", []PressureSample{failedAt(0), failedAt(5), failedAt(10), failedAt(15)}, false, 0},
	} {
		d := testPolicy.Decide(tc.hist)
		if d.Kill != tc.kill || (d.Kill && (d.Stall < tc.stall-1e-9 || d.Stall > tc.stall+1e-9)) || d.Stall > 1 || d.Stall < 0 {
			t.Errorf("%s: kill %v stall %v, want kill %v stall %v", tc.name, d.Kill, d.Stall, tc.kill, tc.stall)
		}
		if d.Keep < 0 || (d.Keep >= len(tc.hist) && len(tc.hist) > 0) {
			t.Errorf("%s: keep %d out of range", tc.name, d.Keep)
		}
	}
}

// What of the history is kept: samples older than the window's first go; without any window
// (incomplete samples, no PSI at all), at most two windows' worth; with the policy off, the last
// two (nearLimits compares their high counters).
func TestPressureKeep(t *testing.T) {
	balloon := pressureSeries(15, func(s int) PressureSample { return at(float64(s), uint64(10+s), 100+float64(s), over) })
	noPSI := pressureSeries(30, func(s int) PressureSample { return failedAt(float64(s)) })
	for _, tc := range []struct {
		name string
		p    PressurePolicy
		hist []PressureSample
		keep int
	}{
		{"a window: from its first sample", testPolicy, balloon, 4},
		{"no window: two windows", testPolicy, noPSI, 9},
		{"off: the last two", PressurePolicy{}, balloon, 13},
		{"memory.high max: the last two", PressurePolicy{Window: 10 * time.Second}, balloon, 13},
		{"off, one sample", PressurePolicy{}, balloon[:1], 0},
	} {
		if d := tc.p.Decide(tc.hist); d.Keep != tc.keep || (d.Kill && !tc.p.Enabled()) {
			t.Errorf("%s: %+v, want keep %d", tc.name, d, tc.keep)
		}
	}
}

// The victim. The tie rule: equal RSS goes to the younger process (the later start time), and
// equal start times to the higher pid, whatever order the candidates come in.
func TestPressureChoose(t *testing.T) {
	proc := func(pid int, rss uint64, start uint64, leaf string) Victim {
		return Victim{PID: pid, RSS: rss, start: start, Leaf: leaf}
	}
	big, bigger := proc(10, 400<<20, 5000, "10-5000"), proc(20, 900<<20, 4000, "20-4000")
	server := proc(2, 2<<30, 100, "server")
	for _, tc := range []struct {
		name   string
		cands  []Candidate
		want   VictimChoice
		victim int
	}{
		{"two balloons: the larger", []Candidate{{Victim: big}, {Victim: bigger}}, KillIt, 20},
		{"two balloons, the other order", []Candidate{{Victim: bigger}, {Victim: big}}, KillIt, 20},
		{"never the server, however large", []Candidate{{Victim: server}, {Victim: big}}, KillIt, 10},
		{"tie on RSS: the younger", []Candidate{{Victim: proc(30, 1<<30, 7000, "a")}, {Victim: proc(31, 1<<30, 6000, "b")}}, KillIt, 30},
		{"tie on RSS and start: the higher pid", []Candidate{{Victim: proc(41, 1<<30, 7000, "a")}, {Victim: proc(40, 1<<30, 7000, "a")}}, KillIt, 41},
		// The largest has begun to exit (PF_EXITING) or carries SIGKILL: no second kill.
		{"a dying victim", []Candidate{{Victim: bigger, Dying: true}, {Victim: big}}, AlreadyDying, 20},
		{"a dying small one is no matter", []Candidate{{Victim: big, Dying: true}, {Victim: bigger}}, KillIt, 20},
		{"no size read yet", []Candidate{{Victim: proc(50, 0, 1, "x")}}, NoVictim, 0},
		{"only the server", []Candidate{{Victim: server}}, NoVictim, 0},
		{"nothing", nil, NoVictim, 0},
	} {
		v, got := testPolicy.Choose(tc.cands)
		if got != tc.want || v.PID != tc.victim {
			t.Errorf("%s: %v pid %d, want %v pid %d", tc.name, got, v.PID, tc.want, tc.victim)
		}
	}
}

func TestPressureEscalate(t *testing.T) {
	for _, tc := range []struct {
		after time.Duration
		want  bool
	}{{0, false}, {5 * time.Second, false}, {5*time.Second + 1, true}, {time.Minute, true}} {
		if got := testPolicy.Escalate(t0, t0.Add(tc.after)); got != tc.want {
			t.Errorf("%v after SIGTERM: escalate %v, want %v", tc.after, got, tc.want)
		}
	}
}
