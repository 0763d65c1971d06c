package augment

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// randomFrame returns a w×h frame of the model with planes subsampled by
// fx×fy (chroma), strides wider than the planes and bytes that are mostly
// smooth, partly noise and extremes.
func randomFrame(r *rand.Rand, model colorModel, w, h, fx, fy int) *frame {
	f := &frame{model: model, w: w, h: h, n: 3}
	if model == modelGray {
		f.n = 1
	}
	for c := range f.n {
		pl := plane{w: w, h: h, fx: 1, fy: 1}
		if c > 0 {
			pl.fx, pl.fy = fx, fy
			pl.w, pl.h = (w+fx-1)/fx, (h+fy-1)/fy
		}
		pl.stride = pl.w + r.IntN(24)
		pl.pix = make([]byte, pl.stride*pl.h)
		for i := range pl.pix {
			x, y := i%pl.stride, i/pl.stride
			switch r.IntN(10) {
			case 0:
				pl.pix[i] = byte(r.Uint32())
			case 1:
				pl.pix[i] = 255 * byte(r.IntN(2))
			default:
				pl.pix[i] = byte(x*3 + y*5 + c*70)
			}
		}
		f.p[c] = pl
	}
	return f
}

// TestSIMDMatchesGo renders random frames (every colour model and
// subsampling) through random pipelines (crops, padding, up- and
// downscales of every filter width, flips) with the kernels of package
// simd and with the Go loops only, and compares the bytes.
func TestSIMDMatchesGo(t *testing.T) {
	if !simdAvailable {
		t.Skip("no AVX2 on this CPU, or built with -tags purego: the Go loops are the only ones")
	}
	r := rand.New(rand.NewPCG(11, 12))
	models := []colorModel{modelYCbCr, modelYCbCr, modelGray, modelRGB, modelYCbCrVP8}
	subs := [][2]int{{1, 1}, {2, 2}, {2, 1}, {1, 2}, {4, 1}, {4, 2}}
	checked := 0
	for it := range 300 {
		model := models[r.IntN(len(models))]
		sub := subs[r.IntN(len(subs))]
		w, h := 1+r.IntN(900), 1+r.IntN(900)
		if it%4 == 0 {
			w, h = 1+r.IntN(40), 1+r.IntN(40)
		}
		f := randomFrame(r, model, w, h, sub[0], sub[1])
		oh, ow := 1+r.IntN(300), 1+r.IntN(300)
		var text string
		switch r.IntN(4) {
		case 0:
			text = fmt.Sprintf("random_resized_crop(size=%d,%d,scale=0.01:1,ratio=0.3:3)|hflip(p=0.5)", oh, ow)
		case 1:
			text = fmt.Sprintf("resize(size=%d)|center_crop(size=%d,%d)|hflip(p=0.5)", 1+r.IntN(400), oh, ow)
		case 2:
			text = fmt.Sprintf("resize(size=%d,%d)|hflip(p=0.5)", oh, ow)
		default:
			text = fmt.Sprintf("center_crop(size=%d,%d)|hflip(p=0.5)", oh, ow)
		}
		p, err := ParsePipeline(text, nil)
		if err != nil {
			t.Fatal(err)
		}
		var s sample
		p.plan(&s, f.w, f.h, SampleRand(5, it, int64(it)))
		got := make([]byte, p.RowBytes())
		want := make([]byte, p.RowBytes())
		render(got, f, &s, new(scratch))
		render(want, f, &s, &scratch{noSIMD: true})
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d: %s on a %d×%d frame (model %d, chroma %v): package simd's bytes differ from the Go loops'", it, text, w, h, model, sub)
		}
		checked++
	}
	t.Logf("%d renders compared", checked)
}

// TestSIMDFilterWidths covers every window width of the horizontal
// kernels (2 to 8 samples, seen[t] true when simd.HFilter ran them) and
// the Go loops beyond, on the same frame.
func TestSIMDFilterWidths(t *testing.T) {
	if !simdAvailable {
		t.Skip("no AVX2 on this CPU, or built with -tags purego: the Go loops are the only ones")
	}
	r := rand.New(rand.NewPCG(13, 14))
	f := randomFrame(r, modelYCbCr, 1200, 700, 2, 2)
	seen := map[int]bool{}
	for out := 40; out <= 1400; out += 37 {
		for _, flip := range []bool{false, true} {
			var s sample
			s.g = geom{rw: float64(f.w), rh: float64(f.h), vw: f.w, vh: f.h, ow: f.w, oh: f.h}
			s.g.crop(13, 17, f.h-20, f.w-30)
			s.g.resize(out, 37+out/3)
			s.g.flip = flip
			got := make([]byte, s.g.ow*s.g.oh*3)
			want := make([]byte, len(got))
			sc := new(scratch)
			render(got, f, &s, sc)
			seen[sc.ax.fixed] = seen[sc.ax.fixed] || sc.ax.simd
			render(want, f, &s, &scratch{noSIMD: true})
			if !bytes.Equal(got, want) {
				t.Fatalf("%d×%d (flip %v, %d-sample windows): package simd's bytes differ from the Go loops'", s.g.ow, s.g.oh, flip, sc.ax.fixed)
			}
		}
	}
	wider := false
	for t0 := range seen {
		wider = wider || t0 > 8
	}
	for t0 := 2; t0 <= 8; t0++ {
		if !seen[t0] {
			t.Errorf("no render had %d-sample horizontal windows through simd.HFilter; seen %v", t0, seen)
		}
	}
	if !wider {
		t.Errorf("no render had windows of more than 8 samples; seen %v", seen)
	}
}
