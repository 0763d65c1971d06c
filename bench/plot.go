package bench

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	colorLoaderd = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	peerColors   = []color.Color{
		color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
		color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
		color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	}
	colorFused = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	colorLimit = color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}
)

// WritePlot draws two panels into a PNG at path: images/s against workers
// (loaderd cold, loaderd precompute, each peer's best configuration per
// worker count and its multi-epoch point) and images/s against
// Flight clients (warm, with the loopback TCP limit and the best cold
// figure as lines). Bars span the min and max of the repeats.
func (r *Report) WritePlot(path string) error {
	left, err := r.workersPlot()
	if err != nil {
		return err
	}
	right, err := r.clientsPlot()
	if err != nil {
		return err
	}
	img := vgimg.NewWith(vgimg.UseWH(12*vg.Inch, 5*vg.Inch), vgimg.UseDPI(100))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Centimeter, PadTop: vg.Millimeter * 3,
		PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3}
	plots := [][]*plot.Plot{{left, right}}
	canvases := plot.Align(plots, tiles, dc)
	left.Draw(canvases[0][0])
	right.Draw(canvases[0][1])

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("bench: plot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	return nil
}

func (r *Report) workersPlot() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Cold: decode + augment, %d images of %s\n%s, %d cores, decoder %s",
		r.Dataset.Images, filepath.Base(r.Dataset.Source), orDash(r.Machine.CPU), r.Machine.Cores, orDash(r.Machine.Decoder))
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.X.Label.Text = "workers"
	p.Y.Label.Text = "images/s"
	p.Y.Min = 0
	p.Legend.Top, p.Legend.Left = true, true

	if err := addSeries(p, "loaderd cold", colorLoaderd, draw.CircleGlyph{}, r.Cold, func(q Point) float64 { return float64(q.Workers) }); err != nil {
		return nil, err
	}
	for k, res := range r.Peers {
		c := peerColors[k%len(peerColors)]
		// The best configuration per worker count; num_workers 0 sits at 1.
		var best []Point
		for w := 1; w <= maxWorkers(r); w++ {
			if p, ok := res.best(w); ok {
				p.Workers = w
				best = append(best, p)
			}
		}
		if err := addSeries(p, res.Label+", best variant", c, draw.TriangleGlyph{}, best, func(q Point) float64 { return float64(q.Workers) }); err != nil {
			return nil, err
		}
		for _, q := range res.MultiEpoch {
			label := fmt.Sprintf("%s %s, %d epochs", res.Label, q.Variant, q.Epochs)
			if err := addPoints(p, label, c, draw.PlusGlyph{}, []Point{q}, func(q Point) float64 { return float64(q.Workers) - 0.08 }); err != nil {
				return nil, err
			}
		}
	}
	for _, q := range r.Precompute {
		label := fmt.Sprintf("loaderd precompute, %d fused epochs", q.Epochs)
		if q.Epochs == 1 {
			label = "loaderd precompute, 1 epoch"
		}
		glyph, dx := draw.GlyphDrawer(draw.CrossGlyph{}), 0.08
		if q.Epochs > 1 {
			glyph, dx = draw.PlusGlyph{}, 0.16
		}
		if err := addPoints(p, label, colorFused, glyph, []Point{q}, func(q Point) float64 { return float64(q.Workers) + dx }); err != nil {
			return nil, err
		}
	}
	p.X.Min, p.X.Max = 0.5, float64(max(1, maxWorkers(r)))+0.5
	finish(p)
	return p, nil
}

func (r *Report) clientsPlot() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Warm: cached epoch over Arrow Flight (DoGet, loopback)\n%d-byte samples, batches of %d",
		r.Dataset.RowBytes, r.Options.BatchSize)
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.X.Label.Text = "concurrent clients"
	p.Y.Label.Text = "images/s"
	p.Y.Min = 0
	p.Legend.Top, p.Legend.Left = true, true
	if err := addSeries(p, "loaderd warm", colorLoaderd, draw.CircleGlyph{}, r.Warm, func(q Point) float64 { return float64(q.Clients) }); err != nil {
		return nil, err
	}
	for i, res := range r.Python { // one client each, drawn just right of 1
		if res.Error != "" {
			continue
		}
		dx := 0.1 * float64(i+1)
		if err := addPoints(p, "Python: "+res.Label, peerColors[i%len(peerColors)], draw.SquareGlyph{}, []Point{res.Point},
			func(q Point) float64 { return float64(q.Clients) + dx }); err != nil {
			return nil, err
		}
	}
	xmax := 1
	for _, q := range r.Warm {
		xmax = max(xmax, q.Clients)
	}
	var loop float64
	for _, l := range r.Limits.Loopback {
		loop = max(loop, l.SamplesPerSec)
	}
	var cold, peer float64
	for _, q := range r.Cold {
		cold = max(cold, q.ImagesPerSec)
	}
	for _, res := range r.Peers {
		for _, q := range res.Cold {
			peer = max(peer, q.ImagesPerSec)
		}
	}
	for _, h := range []struct {
		label string
		y     float64
		dash  []vg.Length
	}{
		{label: "loopback TCP limit, best of 1–2 streams", y: loop, dash: []vg.Length{vg.Points(6), vg.Points(3)}},
		{label: "best cold (decode + augment)", y: cold, dash: []vg.Length{vg.Points(2), vg.Points(2)}},
		{label: "best peer, cold", y: peer, dash: []vg.Length{vg.Points(1), vg.Points(3)}},
	} {
		if h.y <= 0 {
			continue
		}
		l, err := plotter.NewLine(plotter.XYs{{X: 0.5, Y: h.y}, {X: float64(xmax) + 0.5, Y: h.y}})
		if err != nil {
			return nil, fmt.Errorf("bench: plot: %w", err)
		}
		l.Color, l.Dashes = colorLimit, h.dash
		p.Add(l)
		p.Legend.Add(h.label, l)
	}
	p.X.Min, p.X.Max = 0.5, float64(xmax)+0.5
	finish(p)
	return p, nil
}

// finish sets integer ticks on X, a smaller legend, and head room above
// the data for the legend.
func finish(p *plot.Plot) {
	p.X.Tick.Marker = integerTicks{}
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Y.Max = max(p.Y.Max*1.4, 1)
	p.Y.Tick.Marker = wholeTicks{}
}

// wholeTicks are plot's default ticks labelled without decimals.
type wholeTicks struct{}

func (wholeTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = fmt.Sprintf("%.0f", ts[i].Value)
		}
	}
	return ts
}

// addSeries draws pts as a line with points and min–max bars.
func addSeries(p *plot.Plot, label string, c color.Color, g draw.GlyphDrawer, pts []Point, x func(Point) float64) error {
	if len(pts) == 0 {
		return nil
	}
	xys, bars := seriesData(pts, x)
	line, scatter, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	line.Color, scatter.Color, scatter.Shape = c, c, g
	eb, err := plotter.NewYErrorBars(bars)
	if err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	eb.Color = c
	p.Add(line, scatter, eb)
	p.Legend.Add(label, line, scatter)
	return nil
}

// addPoints draws pts as lone points with min–max bars.
func addPoints(p *plot.Plot, label string, c color.Color, g draw.GlyphDrawer, pts []Point, x func(Point) float64) error {
	if len(pts) == 0 {
		return nil
	}
	xys, bars := seriesData(pts, x)
	scatter, err := plotter.NewScatter(xys)
	if err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	scatter.Color, scatter.Shape, scatter.Radius = c, g, vg.Points(4)
	eb, err := plotter.NewYErrorBars(bars)
	if err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	eb.Color = c
	p.Add(scatter, eb)
	p.Legend.Add(label, scatter)
	return nil
}

// errorXYs carries points and their asymmetric error bars.
type errorXYs struct {
	plotter.XYs
	plotter.YErrors
}

func seriesData(pts []Point, x func(Point) float64) (plotter.XYs, errorXYs) {
	xys := make(plotter.XYs, len(pts))
	errs := make(plotter.YErrors, len(pts))
	for i, q := range pts {
		xys[i] = plotter.XY{X: x(q), Y: q.ImagesPerSec}
		errs[i].Low = max(0, q.ImagesPerSec-q.Min)
		errs[i].High = max(0, q.Max-q.ImagesPerSec)
	}
	return xys, errorXYs{XYs: xys, YErrors: errs}
}

func maxWorkers(r *Report) int {
	n := 0
	for _, q := range r.Cold {
		n = max(n, q.Workers)
	}
	for _, res := range r.Peers {
		for _, q := range res.Cold {
			n = max(n, q.Workers)
		}
	}
	for _, q := range r.Precompute {
		n = max(n, q.Workers)
	}
	return n
}

// integerTicks labels every whole number in the axis range.
type integerTicks struct{}

func (integerTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for v := int(lo); float64(v) <= hi; v++ {
		if float64(v) >= lo && v >= 1 {
			ts = append(ts, plot.Tick{Value: float64(v), Label: fmt.Sprint(v)})
		}
	}
	return ts
}
