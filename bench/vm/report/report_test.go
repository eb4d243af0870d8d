package main

import (
	"bytes"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg/draw"
)

func TestParseSeries(t *testing.T) {
	s, err := parseSeries(fields("config=supervise what=agent run=3 killed_by=pressure_kill killed_at_ms=3100.5 probes=-1000.0:12.5,0.0:20.1,50.2:10000.0:timeout"))
	if err != nil {
		t.Fatal(err)
	}
	want := []probe{{-1000, 12.5, ""}, {0, 20.1, ""}, {50.2, 10000, "timeout"}}
	if s.config != "supervise" || s.what != "agent" || s.run != 3 || s.killedBy != "pressure_kill" || s.killedAt != 3100.5 ||
		len(s.probes) != 3 || s.probes[0] != want[0] || s.probes[1] != want[1] || s.probes[2] != want[2] {
		t.Errorf("parsed %+v", s)
	}
	if s.worst() != 10000 {
		t.Errorf("worst %v, want the timed-out probe's 10000 ms", s.worst())
	}
	s, err = parseSeries(fields("config=baseline what=agent run=1 killed_by=none killed_at_ms=none probes=1:2"))
	if err != nil || !math.IsNaN(s.killedAt) {
		t.Errorf("not killed: %+v, %v", s, err)
	}
	for _, bad := range []string{
		"what=agent run=1 killed_at_ms=none probes=1:2",
		"config=b what=agent run=x killed_at_ms=none probes=1:2",
		"config=b what=agent run=1 killed_at_ms=soon probes=1:2",
		"config=b what=agent run=1 killed_at_ms=none probes=",
		"config=b what=agent run=1 killed_at_ms=none probes=1",
		"config=b what=agent run=1 killed_at_ms=none probes=1:2:timeout:x",
		"config=b what=agent run=1 killed_at_ms=none probes=1:fast",
		"config=b what=agent run=1 killed_at_ms=none probes=1:NaN",
		"config=b what=agent run=1 killed_at_ms=Inf probes=1:2",
	} {
		if _, err := parseSeries(fields(bad)); err == nil {
			t.Errorf("parseSeries(%q): no error", bad)
		}
	}
}

// The representative of a configuration is its median-worst run; server runs are not drawn.
func TestPanels(t *testing.T) {
	run := func(config, what string, n int, worst float64) series {
		return series{config: config, what: what, run: n, probes: []probe{{0, 1, ""}, {50, worst, ""}}}
	}
	ps := panels([]series{
		run("baseline", "agent", 1, 50), run("baseline", "agent", 2, 10), run("baseline", "agent", 3, 30),
		run("baseline", "agent", 4, 20), run("supervise", "server", 1, 999),
		run("supervise", "agent", 1, 7), run("supervise", "agent", 2, 5), run("supervise", "agent", 3, 7),
	})
	if len(ps) != 2 || ps[0].config != "baseline" || ps[1].config != "supervise" || len(ps[0].runs) != 4 || len(ps[1].runs) != 3 {
		t.Fatalf("panels %+v", ps)
	}
	// Worst 10 20 30 50: the lower median is 20, run 4. Worst 5 7 7: run 1 (7, the lower run number).
	if got := ps[0].runs[ps[0].rep].run; got != 4 {
		t.Errorf("baseline representative: run %d, want 4", got)
	}
	if got := ps[1].runs[ps[1].rep].run; got != 1 {
		t.Errorf("supervise representative: run %d, want 1", got)
	}
}

// A pause in the probes longer than idleGap breaks the line: nothing was measured there.
func TestRunLinesBreakAtIdleGaps(t *testing.T) {
	e := extent{xmin: 0, xmax: 10, ylo: 1, yhi: 10000}
	s := series{probes: []probe{{0, 10, ""}, {60, 900, ""}, {1000, 10, ""}, {2100, 10, ""}, {2160, 0.1, ""}}}
	lines := runLines(s, e, draw.LineStyle{Width: 1})
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2 (broken between 1010 and 2100 ms)", len(lines))
	}
	if n := lines[0].(*plotter.Line).XYs.Len(); n != 3 {
		t.Errorf("first stretch has %d probes, want 3 (a long probe is no gap)", n)
	}
	if xy := lines[1].(*plotter.Line).XYs[1]; xy.X != 2.16 || xy.Y != 1 {
		t.Errorf("probe at %+v, want x in seconds and a latency below the axis at its bottom", xy)
	}
}

// The legend goes where it hides fewer probes: the bottom when the right of the panel is high.
func TestLegendOnTop(t *testing.T) {
	e := extent{xmin: 0, xmax: 10, ylo: 1, yhi: 10000}
	at := func(lat float64) panel {
		return panel{runs: []series{{probes: []probe{{0, 10, ""}, {6000, lat, ""}, {9000, lat, ""}}}}}
	}
	if !legendOnTop(at(10), e) || legendOnTop(at(2000), e) {
		t.Errorf("legend on top: low data %t, high data %t; want true, false", legendOnTop(at(10), e), legendOnTop(at(2000), e))
	}
}

func TestLatencyTicks(t *testing.T) {
	var labels []string
	n := 0
	for _, tk := range (latencyTicks{}).Ticks(1, 10000) {
		n++
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if got := strings.Join(labels, ","); got != "1 ms,10 ms,100 ms,1 s,10 s" || n != 4*9+1 {
		t.Errorf("ticks: %d, labelled %s", n, got)
	}
}

// The whole program on a small results file: the tables, and a PNG of the expected size that
// decodes, the same bytes on every run.
func TestRunDrawsThePicture(t *testing.T) {
	dir := t.TempDir()
	render := func(name string) []byte {
		t.Helper()
		in, err := os.Open("testdata/results.txt")
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		var stdout, stderr bytes.Buffer
		path := filepath.Join(dir, name)
		if code := run([]string{"--png", path}, in, &stdout, &stderr); code != 0 {
			t.Fatalf("status %d, stderr %s", code, stderr.String())
		}
		for _, row := range []string{"| baseline | agent | 3 | 3/3 | 0/3 | 1500 ms | 1200 ms |", "| supervise | server | 1 | 0/1 | n/a |"} {
			if !strings.Contains(stdout.String(), row) {
				t.Errorf("tables lack %q:\n%s", row, stdout.String())
			}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := render("a.png")
	img, err := png.Decode(bytes.NewReader(first))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	// Two panels (baseline, supervise): 9 in wide, a 0.55 in title band and 2.4 in a panel, at 100 dpi.
	if b := img.Bounds(); b.Dx() != 900 || b.Dy() != 535 {
		t.Errorf("picture %dx%d, want 900x535", b.Dx(), b.Dy())
	}
	if _, ok := img.(*image.Paletted); !ok {
		t.Errorf("picture is %T, want a paletted image (the small file)", img)
	}
	if second := render("b.png"); !bytes.Equal(first, second) {
		t.Errorf("the same results drew different files (%d and %d bytes)", len(first), len(second))
	}
}

func TestRunWithoutAgentSeries(t *testing.T) {
	var stderr bytes.Buffer
	in := strings.NewReader("BENCH config=supervise what=server run=1\nSERIES config=supervise what=server run=1 killed_at_ms=none probes=1:2\n")
	if code := run([]string{"--png", filepath.Join(t.TempDir(), "x.png")}, in, &bytes.Buffer{}, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "no SERIES line with the balloon in an agent") {
		t.Errorf("status %d, stderr %q", code, stderr.String())
	}
	in = strings.NewReader("SERIES config=supervise what=agent run=1 killed_at_ms=none probes=1\n")
	if code := run(nil, in, &bytes.Buffer{}, &stderr); code != 2 {
		t.Errorf("a broken SERIES line: status %d, want 2", code)
	}
}
