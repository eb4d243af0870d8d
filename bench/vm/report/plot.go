package main

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The picture: 900 px wide at 100 dpi, a title band, one panel per configuration.
const (
	dpi         = 100
	width       = 9 * vg.Inch
	titleHeight = 0.55 * vg.Inch
	panelHeight = 2.4 * vg.Inch
)

// sans is the typeface of every text: Liberation Sans, which vgimg embeds (no system fonts).
var sans = font.Font{Typeface: "Liberation", Variant: "Sans"}

// What each configuration of bench/vm/guest is, and its colour.
var configs = map[string]struct {
	label string
	color color.RGBA
}{
	"baseline":      {"baseline: the seed's plain unit (MemoryHigh, MemoryMax on the whole unit)", color.RGBA{214, 39, 40, 255}},
	"supervise":     {"supervise: t3-supervise (memory.high on the agents only, early pressure kill)", color.RGBA{31, 119, 180, 255}},
	"supervise-oom": {"supervise-oom: t3-supervise, memory.high = memory.max (the kernel's OOM kill)", color.RGBA{44, 160, 44, 255}},
}

// Colours for configurations not in configs, in order.
var otherColors = []color.RGBA{{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}}

// steps is how many blends of each colour with white the palette holds; faintness is how much of
// a run's colour its faint lines keep (the rest is white), one of those blends.
const (
	steps     = 8
	faintness = 3.0 / steps
)

func writePNGFile(path string, all []series) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = writePNG(f, all)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writePNG draws the runs with the balloon in an agent and writes the picture as a PNG.
func writePNG(w io.Writer, all []series) error {
	ps := panels(all)
	if len(ps) == 0 {
		return errors.New("no SERIES line with the balloon in an agent")
	}
	colors := make([]color.RGBA, len(ps))
	others := 0
	for i, p := range ps {
		if c, ok := configs[p.config]; ok {
			colors[i] = c.color
		} else {
			colors[i] = otherColors[others%len(otherColors)]
			others++
		}
	}
	img := render(ps, colors)
	// Every pixel is a blend of white and one of a few colours (antialiasing): a palette of those
	// blends keeps the picture as drawn and makes the file several times smaller than RGBA.
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	return enc.Encode(w, toPaletted(img, palette(colors)))
}

// extent is what all panels share, so that they compare at a glance.
type extent struct{ xmin, xmax, ylo, yhi float64 }

func extentOf(ps []panel) extent {
	e := extent{xmin: math.Inf(1), xmax: math.Inf(-1), ylo: math.Inf(1), yhi: math.Inf(-1)}
	for _, p := range ps {
		for _, s := range p.runs {
			for _, pr := range s.probes {
				e.xmin, e.xmax = min(e.xmin, pr.t/1000), max(e.xmax, pr.t/1000)
				e.ylo, e.yhi = min(e.ylo, pr.latency), max(e.yhi, pr.latency)
			}
		}
	}
	// Whole decades on the log axis, at least 0.1 ms (a latency of 0 cannot be drawn).
	e.ylo = math.Pow(10, math.Floor(math.Log10(max(e.ylo, 0.1))))
	e.yhi = math.Pow(10, math.Ceil(math.Log10(max(e.yhi, e.ylo*10))))
	if e.xmax <= e.xmin {
		e.xmax = e.xmin + 1
	}
	return e
}

func render(ps []panel, colors []color.RGBA) image.Image {
	e := extentOf(ps)
	c := vgimg.NewWith(vgimg.UseWH(width, titleHeight+vg.Length(len(ps))*panelHeight), vgimg.UseDPI(dpi))
	dc := draw.New(c)
	title := text.Style{Color: color.Black, Font: font.From(sans, 13), XAlign: draw.XCenter,
		YAlign: draw.YTop, Handler: plot.DefaultTextHandler}
	top := dc.Max.Y - 0.08*vg.Inch
	dc.FillText(title, vg.Point{X: dc.Center().X, Y: top}, "GET / latency (log scale) while a tool in one of the agents balloons")
	title.Font.Size = 10
	dc.FillText(title, vg.Point{X: dc.Center().X, Y: top - 0.24*vg.Inch},
		"each probe a new connection from outside the unit; guest under qemu software emulation (TCG): absolute times are an upper bound")

	plots := make([][]*plot.Plot, len(ps))
	for i, p := range ps {
		plots[i] = []*plot.Plot{panelPlot(p, colors[i], e, i == len(ps)-1)}
	}
	tiles := draw.Tiles{Rows: len(ps), Cols: 1, PadTop: titleHeight, PadBottom: 4, PadLeft: 6, PadRight: 14, PadY: 10}
	for i, row := range plot.Align(plots, tiles, dc) {
		plots[i][0].Draw(row[0])
	}
	return c.Image()
}

func panelPlot(p panel, col color.RGBA, e extent, last bool) *plot.Plot {
	pl := plot.New()
	for _, st := range []*text.Style{&pl.Title.TextStyle, &pl.X.Label.TextStyle, &pl.X.Tick.Label, &pl.Y.Tick.Label, &pl.Legend.TextStyle} {
		st.Font.Typeface, st.Font.Variant = sans.Typeface, sans.Variant
	}
	pl.Title.Text = p.config
	if c, ok := configs[p.config]; ok {
		pl.Title.Text = c.label
	}
	pl.Title.TextStyle.Font.Size = 11
	pl.Title.Padding = 4
	// No Y label: gonum centres it on the linear midpoint of the range, which on a log axis
	// pushes it, and the data area with it, off the panel; the tick labels carry the unit.
	if last {
		pl.X.Label.Text = "seconds since the balloon started"
	}
	pl.Y.Scale = plot.LogScale{}
	pl.Y.Tick.Marker = latencyTicks{}
	grid := plotter.NewGrid()
	grid.Vertical.Color, grid.Horizontal.Color = color.Gray{Y: 215}, color.Gray{Y: 215} // on the palette's greys
	pl.Add(grid)

	faint := draw.LineStyle{Color: blend(col, faintness), Width: 0.6}
	for i, s := range p.runs {
		if i != p.rep {
			pl.Add(runLines(s, e, faint)...)
		}
	}
	rep := p.runs[p.rep]
	bold := draw.LineStyle{Color: col, Width: 1.3}
	pl.Add(runLines(rep, e, bold)...)
	start := vline(0, e, color.Gray{Y: 96}, nil)
	pl.Add(start)

	pl.Legend.Add(fmt.Sprintf("run %d of %d (the median-worst run)", rep.run, len(p.runs)), &plotter.Line{LineStyle: bold})
	switch others := len(p.runs) - 1; others {
	case 0:
	case 1:
		pl.Legend.Add("the other run", &plotter.Line{LineStyle: faint})
	default:
		pl.Legend.Add(fmt.Sprintf("the other %d runs", others), &plotter.Line{LineStyle: faint})
	}
	pl.Legend.Add("balloon started", start)
	if math.IsNaN(rep.killedAt) {
		pl.Legend.Add(fmt.Sprintf("run %d: balloon not killed (no event)", rep.run))
	} else {
		kill := vline(rep.killedAt/1000, e, color.Black, []vg.Length{4, 2})
		pl.Add(kill)
		pl.Legend.Add(fmt.Sprintf("balloon killed, run %d (%s)", rep.run, killName(rep.killedBy)), kill)
	}
	if fails := failures(p.runs, e); fails != nil {
		pl.Add(fails)
		pl.Legend.Add("failed probe (any run)", fails)
	}
	pl.Legend.TextStyle.Font.Size = 9
	pl.Legend.Top = legendOnTop(p, e)
	pl.Legend.XOffs, pl.Legend.YOffs = -4, 0
	if pl.Legend.Top {
		pl.Legend.YOffs = -2
	}

	// After Add, which widens the axes to the data: every panel on the same axes.
	pl.X.Min, pl.X.Max, pl.Y.Min, pl.Y.Max = e.xmin, e.xmax, e.ylo, e.yhi
	return pl
}

// idleGap is a pause between the end of one probe and the start of the next, in ms, that means
// the prober itself did not run (the whole guest stalled, or the host under it): a run's line
// breaks there rather than draw a straight segment through a time nothing measured.
const idleGap = 1000

// runLines is a run's latency over time: one line per stretch without an idle gap.
func runLines(s series, e extent, st draw.LineStyle) []plot.Plotter {
	var out []plot.Plotter
	var xy plotter.XYs
	flush := func() {
		if len(xy) > 0 {
			l, _ := plotter.NewLine(xy) // its only error is NaN or Inf, which parseSeries refuses
			l.LineStyle = st
			out = append(out, l)
		}
		xy = nil
	}
	for i, pr := range s.probes {
		if i > 0 && pr.t-(s.probes[i-1].t+s.probes[i-1].latency) > idleGap {
			flush()
		}
		xy = append(xy, plotter.XY{X: pr.t / 1000, Y: max(pr.latency, e.ylo)})
	}
	flush()
	return out
}

func vline(x float64, e extent, c color.Color, dashes []vg.Length) *plotter.Line {
	l, _ := plotter.NewLine(plotter.XYs{{X: x, Y: e.ylo}, {X: x, Y: e.yhi}})
	l.Color, l.Width, l.Dashes = c, 1, dashes
	return l
}

// failures marks the failed probes of all runs (a client saw an error, whichever run it was);
// nil when none failed.
func failures(runs []series, e extent) *plotter.Scatter {
	var xy plotter.XYs
	for _, s := range runs {
		for _, pr := range s.probes {
			if pr.fail != "" {
				xy = append(xy, plotter.XY{X: pr.t / 1000, Y: max(pr.latency, e.ylo)})
			}
		}
	}
	if xy == nil {
		return nil
	}
	sc, _ := plotter.NewScatter(xy)
	sc.GlyphStyle = draw.GlyphStyle{Color: color.Black, Radius: 3, Shape: draw.CrossGlyph{}}
	return sc
}

func killName(by string) string {
	switch by {
	case "pressure_kill", "oom_kill":
		return "the supervisor's " + by + " event"
	case "kernel":
		return "the kernel's OOM kill"
	}
	return by
}

// legendOnTop says where the legend (drawn inside the panel, at its right) hides fewer probes:
// in the top or the bottom band of the right part of the panel. The bands are roughly the
// legend's size: the right 45% of the width, a third of the (log) height.
func legendOnTop(p panel, e extent) bool {
	x0 := e.xmin + 0.55*(e.xmax-e.xmin)
	span := math.Log(e.yhi / e.ylo)
	var top, bottom int
	for _, s := range p.runs {
		for _, pr := range s.probes {
			if pr.t/1000 < x0 {
				continue
			}
			switch h := math.Log(max(pr.latency, e.ylo)/e.ylo) / span; {
			case h > 2.0/3:
				top++
			case h < 1.0/3:
				bottom++
			}
		}
	}
	return top <= bottom
}

// latencyTicks marks a log axis in milliseconds: labelled decades ("10 ms", "1 s"), unlabelled
// 2..9 in between.
type latencyTicks struct{}

func (latencyTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for d := math.Pow(10, math.Floor(math.Log10(lo))); d <= hi; d *= 10 {
		for m := 1.0; m <= 9; m++ {
			v := m * d
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 {
				t.Label = msLabel(v)
			}
			ts = append(ts, t)
		}
	}
	return ts
}

func msLabel(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%g s", v/1000)
	}
	return fmt.Sprintf("%g ms", v)
}

// blend is c with only a of it kept over white.
func blend(c color.RGBA, a float64) color.RGBA {
	mix := func(v uint8) uint8 { return uint8(math.Round(float64(v)*a + 255*(1-a))) }
	return color.RGBA{mix(c.R), mix(c.G), mix(c.B), 255}
}

// palette holds white, greySteps greys (text, axes and grid: most antialiased pixels), and
// steps blends of each colour with white. Too few greys and a light grey pixel's nearest entry
// is a faint colour: tinted grid lines. The file is about a quarter of the RGBA one's size
// (60 KB instead of 216 KB for BENCHMARKS.md's picture).
func palette(cs []color.RGBA) color.Palette {
	const greySteps = 32
	pal := color.Palette{color.White}
	for k := greySteps; k >= 1; k-- {
		pal = append(pal, blend(color.RGBA{0, 0, 0, 255}, float64(k)/greySteps))
	}
	for _, c := range cs {
		for k := steps; k >= 1; k-- {
			pal = append(pal, blend(c, float64(k)/steps))
		}
	}
	return pal
}

// toPaletted maps every pixel to its nearest palette colour, without dithering (which would
// only add noise to the flat areas and grow the file).
func toPaletted(img image.Image, pal color.Palette) *image.Paletted {
	b := img.Bounds()
	out := image.NewPaletted(b, pal)
	cache := map[color.RGBA]uint8{}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			i, ok := cache[c]
			if !ok {
				i = uint8(pal.Index(c))
				cache[c] = i
			}
			out.SetColorIndex(x, y, i)
		}
	}
	return out
}
