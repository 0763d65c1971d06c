package augment

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/disintegration/imaging"
)

// renderCrop resamples the crop rect of src (an RGB PNG) to w×h through
// the package's geometry and resampler.
func renderCrop(t *testing.T, src []byte, crop image.Rectangle, w, h int) *image.NRGBA {
	t.Helper()
	o, err := openImage(src, false, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := o.read(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	var s sample
	s.g = geom{rw: float64(f.w), rh: float64(f.h), vw: f.w, vh: f.h, ow: f.w, oh: f.h}
	s.g.crop(crop.Min.Y, crop.Min.X, crop.Dy(), crop.Dx())
	s.g.resize(w, h)
	rgb := make([]byte, w*h*3)
	render(rgb, f, &s, new(scratch))
	return rgbToNRGBA(rgb, w, h)
}

func TestResampleMatchesImaging(t *testing.T) {
	img := natural(400, 300, 11)
	src := encodePNG(t, img)
	tests := []struct {
		name string
		crop image.Rectangle
		w, h int
	}{
		{name: "downscale 2.3x", crop: img.Bounds(), w: 174, h: 130},
		{name: "downscale 5x", crop: img.Bounds(), w: 80, h: 60},
		{name: "crop then downscale", crop: image.Rect(37, 21, 337, 281), w: 224, h: 224},
		{name: "small crop upscaled", crop: image.Rect(100, 80, 180, 140), w: 224, h: 224},
		{name: "aspect change", crop: image.Rect(0, 50, 400, 250), w: 100, h: 160},
		{name: "identity", crop: image.Rect(10, 10, 110, 60), w: 100, h: 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := renderCrop(t, src, tc.crop, tc.w, tc.h)
			want := imaging.Resize(imaging.Crop(img, tc.crop), tc.w, tc.h, imaging.Linear)
			if d := meanAbsDiff(got, want); d >= 1 {
				t.Errorf("mean abs diff to imaging Linear = %.3f levels, want < 1", d)
			}
		})
	}
}

func TestRandomResizedCropSampling(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ratio := [2]float64{0.75, 1.3333}
	const n = 20000
	w, h := 500, 375
	for _, scale := range [][2]float64{{0.08, 1}, {0.08, 0.5}} {
		var ratioBins, areaBins [4]int
		sumArea := 0.0
		for range n {
			top, left, ch, cw := rrcParams(w, h, scale, ratio, rng)
			if top < 0 || left < 0 || ch < 1 || cw < 1 || top+ch > h || left+cw > w {
				t.Fatalf("crop (%d,%d,%d,%d) outside %dx%d", top, left, ch, cw, w, h)
			}
			area := float64(cw*ch) / float64(w*h)
			// Integer rounding of w and h moves the area a little past the bounds.
			if area < scale[0]*0.95 || area > scale[1]*1.01 {
				t.Fatalf("scale %v: area fraction %.4f out of bounds", scale, area)
			}
			lr := math.Log(float64(cw) / float64(ch))
			if lr < math.Log(ratio[0])-0.02 || lr > math.Log(ratio[1])+0.02 {
				t.Fatalf("log aspect %.3f outside log %v", lr, ratio)
			}
			sumArea += area
			b := int((lr - math.Log(ratio[0])) / (math.Log(ratio[1]) - math.Log(ratio[0])) * 4)
			ratioBins[min(max(b, 0), 3)]++
			b = int((area - scale[0]) / (scale[1] - scale[0]) * 4)
			areaBins[min(max(b, 0), 3)]++
		}
		if scale[1] == 1 {
			// Large crops do not fit a 4:3 image at most aspects and are
			// redrawn: the mean area falls under the uniform 0.54.
			if m := sumArea / n; m < 0.40 || m > 0.53 {
				t.Errorf("scale %v: mean area fraction %.3f, want in [0.40,0.53]", scale, m)
			}
			continue
		}
		// Up to half the area every draw fits: area is uniform and the
		// aspect log-uniform, as torchvision draws them.
		if m := sumArea / n; math.Abs(m-0.29) > 0.01 {
			t.Errorf("scale %v: mean area fraction %.3f, want 0.29", scale, m)
		}
		for i := range 4 {
			if f := float64(ratioBins[i]) / n; math.Abs(f-0.25) > 0.02 {
				t.Errorf("log-aspect bin %d holds %.3f of draws, want 0.25: %v", i, f, ratioBins)
			}
			if f := float64(areaBins[i]) / n; math.Abs(f-0.25) > 0.02 {
				t.Errorf("area bin %d holds %.3f of draws, want 0.25: %v", i, f, areaBins)
			}
		}
	}

	fallback := []struct {
		name              string
		w, h              int
		top, left, ch, cw int
		scale, ratio      [2]float64
	}{
		// Too wide for any ratio: central crop at the largest ratio.
		{name: "wide", w: 1000, h: 10, top: 0, left: 493, ch: 10, cw: 13, scale: [2]float64{0.9, 1}, ratio: ratio},
		// Too tall: central crop at the smallest ratio.
		{name: "tall", w: 10, h: 1000, top: 493, left: 0, ch: 13, cw: 10, scale: [2]float64{0.9, 1}, ratio: ratio},
		// Every attempt too large: central crop at the smallest ratio.
		{name: "square, wide ratios", w: 100, h: 100, top: 8, left: 0, ch: 83, cw: 100, scale: [2]float64{1, 1}, ratio: [2]float64{1.2, 2}},
	}
	for _, tc := range fallback {
		t.Run("fallback "+tc.name, func(t *testing.T) {
			top, left, ch, cw := rrcParams(tc.w, tc.h, tc.scale, tc.ratio, rng)
			if top != tc.top || left != tc.left || ch != tc.ch || cw != tc.cw {
				t.Errorf("rrcParams = (%d,%d,%d,%d), want (%d,%d,%d,%d)", top, left, ch, cw, tc.top, tc.left, tc.ch, tc.cw)
			}
		})
	}
}

func TestTorchvisionGeometry(t *testing.T) {
	tests := []struct {
		name       string
		in, out    int
		wantOffset int
	}{
		{name: "even", in: 256, out: 224, wantOffset: 16},
		{name: "half rounds to even", in: 255, out: 224, wantOffset: 16},      // round(15.5) = 16
		{name: "half rounds to even down", in: 253, out: 224, wantOffset: 14}, // round(14.5) = 14
		{name: "padding", in: 200, out: 224, wantOffset: -12},
		{name: "odd padding", in: 201, out: 224, wantOffset: -11},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := centerOffset(tc.in, tc.out); got != tc.wantOffset {
				t.Errorf("centerOffset(%d, %d) = %d, want %d", tc.in, tc.out, got, tc.wantOffset)
			}
		})
	}
	if h, w := resizeShorter(500, 375, 256); h != 256 || w != 341 {
		t.Errorf("resize 500x375 to 256 = %dx%d, want 341x256", w, h)
	}
	if h, w := resizeShorter(333, 500, 256); h != 384 || w != 256 {
		t.Errorf("resize 333x500 to 256 = %dx%d, want 256x384", w, h)
	}
}

func applyOne(t *testing.T, text string, src []byte, rng *rand.Rand) []byte {
	t.Helper()
	p, err := ParsePipeline(text, &PipelineOptions{Decoder: "go"})
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, p.RowBytes())
	if err := p.Apply(dst, src, rng); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestOps(t *testing.T) {
	img := natural(64, 48, 5)
	src := encodePNG(t, img)
	t.Run("center_crop identity", func(t *testing.T) {
		got := applyOne(t, "center_crop(size=48,64)", src, nil)
		for y := range 48 {
			for x := range 64 {
				o := img.PixOffset(x, y)
				if !bytes.Equal(got[(y*64+x)*3:][:3], img.Pix[o:o+3]) {
					t.Fatalf("pixel (%d,%d) = %v, want %v", x, y, got[(y*64+x)*3:][:3], img.Pix[o:o+3])
				}
			}
		}
	})
	t.Run("center_crop pads with zeros", func(t *testing.T) {
		got := applyOne(t, "center_crop(size=50,70)", src, nil) // pad 1 row, 3 columns each side
		for x := range 70 {
			if !bytes.Equal(got[x*3:x*3+3], []byte{0, 0, 0}) {
				t.Fatalf("top row pixel %d = %v, want black", x, got[x*3:x*3+3])
			}
		}
		o := img.PixOffset(0, 0)
		if !bytes.Equal(got[(70+3)*3:][:3], img.Pix[o:o+3]) {
			t.Errorf("first image pixel = %v, want %v", got[(70+3)*3:][:3], img.Pix[o:o+3])
		}
	})
	t.Run("exact resize is the whole image resampled", func(t *testing.T) {
		got := applyOne(t, "resize(size=20,30)", src, nil)
		want := renderCrop(t, src, img.Bounds(), 30, 20)
		if !bytes.Equal(got, rgbOf(want)) {
			t.Error("resize(size=20,30) differs from resampling the whole image to 30x20")
		}
	})
	t.Run("hflip mirrors", func(t *testing.T) {
		a := applyOne(t, "center_crop(size=40)", src, nil)
		b := applyOne(t, "center_crop(size=40)|hflip(p=1)", src, nil)
		for y := range 40 {
			for x := range 40 {
				if !bytes.Equal(a[(y*40+x)*3:][:3], b[(y*40+39-x)*3:][:3]) {
					t.Fatalf("(%d,%d) not mirrored", x, y)
				}
			}
		}
	})
	t.Run("flip then crop", func(t *testing.T) {
		// Cropping the left of a flipped image is flipping its right.
		a := applyOne(t, "center_crop(size=48,64)|hflip(p=1)|center_crop(size=48,20)", src, nil)
		b := applyOne(t, "center_crop(size=48,20)|hflip(p=1)", src, nil)
		if !bytes.Equal(a, b) {
			t.Error("crop after flip differs from flip after crop of the mirrored window")
		}
	})
	t.Run("jitter zero is identity", func(t *testing.T) {
		a := applyOne(t, "center_crop(size=40)", src, nil)
		b := applyOne(t, "center_crop(size=40)|color_jitter()", src, rand.New(rand.NewPCG(1, 1)))
		if !bytes.Equal(a, b) {
			t.Error("color_jitter() changed pixels")
		}
	})
	t.Run("brightness scales", func(t *testing.T) {
		a := applyOne(t, "center_crop(size=40)", src, nil)
		var steps = []jitterStep{{kind: jBrightness, f: 1 << 15}} // 0.5
		b := append([]byte(nil), a...)
		applyJitter(b, steps)
		for i := range a {
			if want := (int(a[i]) + 1) / 2; int(b[i]) != want {
				t.Fatalf("brightness 0.5 of %d = %d, want %d", a[i], b[i], want)
			}
		}
		gray := append([]byte(nil), a...)
		applyJitter(gray, []jitterStep{{kind: jSaturation, f: 0}})
		for i := 0; i < len(gray); i += 3 {
			if gray[i] != gray[i+1] || gray[i] != gray[i+2] {
				t.Fatalf("saturation 0 left colour %v", gray[i:i+3])
			}
		}
		flat := append([]byte(nil), a...)
		applyJitter(flat, []jitterStep{{kind: jContrast, f: 0}})
		for i := range flat {
			if flat[i] != flat[0] {
				t.Fatalf("contrast 0 is not flat: %d vs %d", flat[i], flat[0])
			}
		}
	})
	t.Run("color_jitter draws change pixels", func(t *testing.T) {
		a := applyOne(t, "center_crop(size=40)|color_jitter(brightness=0.4,contrast=0.4,saturation=0.4)", src, rand.New(rand.NewPCG(1, 1)))
		b := applyOne(t, "center_crop(size=40)|color_jitter(brightness=0.4,contrast=0.4,saturation=0.4)", src, rand.New(rand.NewPCG(1, 2)))
		if bytes.Equal(a, b) {
			t.Error("different draws gave the same pixels")
		}
	})
	t.Run("normalize", func(t *testing.T) {
		a := applyOne(t, "center_crop(size=40)", src, nil)
		b := applyOne(t, "center_crop(size=40)|normalize(mean=0.5,0.25,0,std=0.5,0.25,2)", src, nil)
		mean, std := [3]float64{0.5, 0.25, 0}, [3]float64{0.5, 0.25, 2}
		for c := range 3 {
			for i := range 40 * 40 {
				got := math.Float32frombits(binary.LittleEndian.Uint32(b[4*(c*1600+i):]))
				want := (float64(a[3*i+c])/255 - mean[c]) / std[c]
				if math.Abs(float64(got)-want) > 1e-5 {
					t.Fatalf("channel %d pixel %d = %v, want %v", c, i, got, want)
				}
			}
		}
	})
}

func rgbOf(img *image.NRGBA) []byte {
	out := make([]byte, 0, len(img.Pix)/4*3)
	for i := 0; i < len(img.Pix); i += 4 {
		out = append(out, img.Pix[i:i+3]...)
	}
	return out
}

// TestYCbCrConversion checks the row conversion against image/color on
// every Y and a grid of (Cb, Cr) that includes the extremes and 127..129.
func TestYCbCrConversion(t *testing.T) {
	var chroma []int
	for c := 0; c < 256; c += 5 {
		chroma = append(chroma, c)
	}
	chroma = append(chroma, 1, 127, 128, 129, 254)
	py := make([]byte, 256)
	for i := range py {
		py[i] = byte(i)
	}
	pcb, pcr, d := make([]byte, 256), make([]byte, 256), make([]byte, 768)
	for _, cb := range chroma {
		for _, cr := range chroma {
			for i := range 256 {
				pcb[i], pcr[i] = byte(cb), byte(cr)
			}
			yccRow(d, py, pcb, pcr)
			for y := range 256 {
				r, g, b := color.YCbCrToRGB(uint8(y), uint8(cb), uint8(cr))
				if d[3*y] != r || d[3*y+1] != g || d[3*y+2] != b {
					t.Fatalf("yccRow(%d,%d,%d) = %v, want %d,%d,%d", y, cb, cr, d[3*y:3*y+3], r, g, b)
				}
			}
		}
	}
}

// TestReachBoundsSet checks that reach, which the region decode stops at,
// bounds the rows set's windows read, and by little: by a row or two, or
// more only where the filter is hundreds of samples wide and its tiny end
// weights round to zero.
func TestReachBoundsSet(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	var ax axis
	exact := 0
	for range 20000 {
		inLen := 1 + r.IntN(2000)
		a := r.Float64() * float64(inLen)
		l := r.Float64() * float64(inLen-int(a)+1)
		if r.IntN(4) == 0 { // past the plane, as zero padding reads
			a, l = a-50, l+100
		}
		l = max(l, 0.01)
		vn := 1 + r.IntN(600)
		o0 := r.IntN(vn)
		o1 := o0 + 1 + r.IntN(vn-o0)
		ax.set(inLen, a, l, vn, o0, o1)
		got := reach(inLen, a, l, vn, o1)
		if got < ax.hi {
			t.Fatalf("reach(%d, %v, %v, %d, %d) = %d, but set's windows read up to %d", inLen, a, l, vn, o1, got, ax.hi)
		}
		if scale := l / float64(vn); got-ax.hi > 2+int(scale/32) {
			t.Errorf("reach(%d, %v, %v, %d, %d) = %d, %d rows past set's windows (a downscale by %.1f)", inLen, a, l, vn, o1, got, got-ax.hi, scale)
		}
		if got == ax.hi {
			exact++
		}
	}
	if exact < 19000 {
		t.Errorf("reach was exact %d times of 20000", exact)
	}
}

// TestRoundUp checks roundUp against math.Round where the weights use it
// (x in [0, 1<<14]), at the halves, next to them, and at random.
func TestRoundUp(t *testing.T) {
	xs := []float64{0, 0.5, 1.5, 2.5, 16383.5, 16384, math.Nextafter(0.5, 0), math.Nextafter(0.5, 1),
		0.49999999999999994, math.Nextafter(1.5, 0), math.Nextafter(8191.5, 0), math.SmallestNonzeroFloat64}
	r := rand.New(rand.NewPCG(23, 24))
	for range 100000 {
		x := r.Float64() * (1 << 14)
		xs = append(xs, x, math.Floor(x)+0.5, math.Nextafter(math.Floor(x)+0.5, 0))
	}
	for _, x := range xs {
		if got, want := roundUp(x), math.Round(x); got != want {
			t.Fatalf("roundUp(%v) = %v, math.Round gives %v", x, got, want)
		}
	}
}
