package cgroup

import (
	"os"
	"strings"
	"testing"
	"time"
)

// series builds samples every step from t=0: each row gives the leaves' cumulative CPU in ms
// at that sample ("leaf=ms ..."; a leaf not named is not there).
func series(step time.Duration, rows ...string) []CPUSample {
	t0 := time.Unix(1_000_000, 0)
	var out []CPUSample
	for i, row := range rows {
		s := CPUSample{At: t0.Add(time.Duration(i) * step)}
		for _, f := range strings.Fields(row) {
			leaf, ms, _ := strings.Cut(f, "=")
			var n int
			for _, c := range ms {
				n = n*10 + int(c-'0')
			}
			s.Leaves = append(s.Leaves, LeafCPU{Leaf: leaf, Usage: time.Duration(n) * time.Millisecond})
		}
		out = append(out, s)
	}
	return out
}

func repeatInt(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func repeat(row string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = row
	}
	return out
}

// idle is an open session between turns as measured with Claude Code 2.1.328: its claude (leaf
// s) used 2.7 ms/s on average, in small steps and a burst of 177 ms every 100 s, after a start
// of 1.1 s; one row every 5 s, others (leaf=ms) added to rows from index at on.
type idle struct {
	rows []string
	u    int // s's usage so far, ms
}

func newIdle() *idle { return &idle{u: 1115} }

// add appends n rows of s idling, each with extra leaves.
func (d *idle) add(n int, extra ...string) *idle {
	for i := 0; i < n; i++ {
		d.u += 13
		if len(d.rows)%20 == 7 {
			d.u += 177
		}
		row := "s=" + itoa(d.u)
		if i < len(extra) {
			row += " " + extra[i]
		}
		d.rows = append(d.rows, row)
	}
	return d
}

// work appends rows in which s used ms each.
func (d *idle) work(ms ...int) *idle {
	for _, n := range ms {
		d.u += n
		d.rows = append(d.rows, "s="+itoa(d.u))
	}
	return d
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestJudge(t *testing.T) {
	p := ActivityPolicy{Window: time.Minute, CPU: 500 * time.Millisecond, MinAge: 30 * time.Second}
	step := 5 * time.Second
	cases := []struct {
		name      string
		rows      []string
		busy      bool
		young     int
		activeCPU time.Duration // of the first leaf in the last sample, when > 0
	}{
		{name: "no samples", rows: nil},
		{name: "no leaves", rows: repeat("", 20)},
		{name: "an open session idling for minutes", rows: newIdle().add(60).rows},
		{
			// T3's account probe: `claude --version` (18 ms) and a throwaway SDK session (665 ms),
			// each in its own leaf, gone within a second: never seen for MinAge.
			name: "the probe's leaves, however hard they work",
			rows: newIdle().add(30).add(2, "v=18 p=665", "p=3000").add(3).rows,
		},
		{
			name:  "a probe that is still running is young, not busy",
			rows:  newIdle().add(30).add(2, "p=665", "p=5000").rows,
			young: 1,
		},
		{
			name: "a turn running a tool (claude used 3.6 s in the last minute)",
			rows: newIdle().add(30).work(600, 1000, 1000, 1000).rows,
			busy: true, activeCPU: (3600 + 8*13 + 177) * time.Millisecond, // the turn, 8 idle steps, a burst
		},
		{
			name: "a minute after the turn it is idle again",
			rows: newIdle().add(30).work(600, 1000, 1000, 1000).work(repeatInt(10, 12)...).rows,
		},
		{
			name: "less than a minute after the turn it is still busy",
			rows: newIdle().add(30).work(600, 1000, 1000, 1000).work(repeatInt(10, 10)...).rows,
			busy: true,
		},
		{
			// A session opened and set to work at once is judged after MinAge, on all its use.
			name:  "a new session working, young",
			rows:  newIdle().add(30).add(3, "n=900", "n=2000", "n=3000").rows,
			young: 1,
		},
		{
			name: "a new session working, old enough",
			rows: newIdle().add(30).add(7, "n=900", "n=2000", "n=3000", "n=4000", "n=5000", "n=6000", "n=7000").rows,
			busy: true,
		},
		{
			name: "exactly the threshold is not busy",
			rows: append(repeat("s=1000", 20), "s=1500"),
		},
		{
			name: "one microsecond more is",
			rows: append(repeat("s=1000", 20), "s=1501"),
			busy: true,
		},
		{
			name: "a leaf that is gone does not count",
			rows: append(repeat("s=1000 g=0", 20), "s=1000 g=9000", "s=1000"),
		},
		{
			// From /proc (--no-cgroup), a tree's sum goes back when a reaped child's time leaves it.
			name: "a counter that went back counts from zero",
			rows: append(repeat("s=9000", 20), "s=700"),
			busy: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Judge(p, series(step, c.rows...))
			if v.Busy != c.busy || v.Young != c.young {
				t.Errorf("busy %v, young %d; want busy %v, young %d (%+v)", v.Busy, v.Young, c.busy, c.young, v.Leaves)
			}
			if c.activeCPU > 0 && (len(v.Leaves) == 0 || v.Leaves[0].CPU != c.activeCPU) {
				t.Errorf("leaves %+v, want the first one's CPU in the window %v", v.Leaves, c.activeCPU)
			}
		})
	}
}

// Activity keeps what Judge needs: judging its history gives what judging every sample would.
func TestActivityKeepsEnough(t *testing.T) {
	p := ActivityPolicy{Window: time.Minute, CPU: 500 * time.Millisecond, MinAge: 30 * time.Second}
	rows := newIdle().add(40).add(3, "n=10", "n=20", "n=30").work(900, 1200).add(30).rows
	all := series(5*time.Second, rows...)
	a := Activity{Policy: p}
	for i, s := range all {
		a.Add(s)
		got, want := a.Verdict(), Judge(p, all[:i+1])
		if got.Busy != want.Busy || got.Young != want.Young {
			t.Fatalf("sample %d: kept history says busy %v young %d, the whole one %v %d", i, got.Busy, got.Young, want.Busy, want.Young)
		}
	}
	if n := len(a.hist); n > 14 {
		t.Errorf("%d samples kept, want at most a minute's and one (13)", n)
	}
}

func TestParseCPUStat(t *testing.T) {
	// A real file: a cgroup of this host's unified hierarchy, no cpu controller enabled.
	f, err := os.Open("testdata/cpu.stat.unified-no-controller")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := ParseCPUStat(f)
	if err != nil || st.UsageUSec != 2258027 || st.UserUSec != 1858834 || st.SystemUSec != 399193 {
		t.Errorf("%+v %v", st, err)
	}
	// With the cpu controller the kernel adds its own keys (cgroup-v2.rst, "cpu.stat").
	st, err = ParseCPUStat(strings.NewReader("usage_usec 12\nuser_usec 7\nsystem_usec 5\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n"))
	if err != nil || st.UsageUSec != 12 {
		t.Errorf("%+v %v", st, err)
	}
	for _, bad := range []string{"", "user_usec 1\n", "usage_usec x\n", "usage_usec 1 2\n"} {
		if _, err := ParseCPUStat(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
