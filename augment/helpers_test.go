package augment

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// natural draws a deterministic natural-ish test image: smooth gradients,
// soft blobs, a few hard edges and mild noise.
func natural(w, h int, seed uint64) *image.NRGBA {
	r := rand.New(rand.NewPCG(seed, 7))
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	type blob struct{ x, y, rad, cr, cg, cb float64 }
	blobs := make([]blob, 6)
	for i := range blobs {
		blobs[i] = blob{r.Float64() * float64(w), r.Float64() * float64(h), (0.1 + 0.3*r.Float64()) * float64(min(w, h)),
			r.Float64() * 255, r.Float64() * 255, r.Float64() * 255}
	}
	for y := range h {
		for x := range w {
			c := [3]float64{float64(x) / float64(w) * 200, float64(y) / float64(h) * 180, 90}
			for _, b := range blobs {
				d := math.Hypot(float64(x)-b.x, float64(y)-b.y) / b.rad
				a := math.Exp(-d * d)
				c[0] = c[0]*(1-a) + b.cr*a
				c[1] = c[1]*(1-a) + b.cg*a
				c[2] = c[2]*(1-a) + b.cb*a
			}
			if (x/17+y/23)%5 == 0 { // hard-edged stripes
				c[0], c[1] = c[1], c[0]
			}
			o := img.PixOffset(x, y)
			for k := range 3 {
				v := c[k] + (r.Float64()-0.5)*12
				img.Pix[o+k] = uint8(max(0, min(255, math.Round(v))))
			}
			img.Pix[o+3] = 255
		}
	}
	return img
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t testing.TB, img image.Image, q int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: q}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngVariants returns small PNGs of every pixel format the PNG decoder yields.
func pngVariants(t testing.TB) map[string][]byte {
	base := natural(61, 47, 1)
	b := base.Bounds()
	gray := image.NewGray(b)
	gray16 := image.NewGray16(b)
	rgb64 := image.NewNRGBA64(b)
	alpha := image.NewNRGBA(b)
	pal := image.NewPaletted(b, nil)
	for i := range 64 {
		pal.Palette = append(pal.Palette, color.NRGBA{uint8(i * 4), uint8(255 - i*4), uint8(i * 2), 255})
	}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := base.NRGBAAt(x, y)
			gray.SetGray(x, y, color.Gray{c.G})
			gray16.SetGray16(x, y, color.Gray16{uint16(c.R)<<8 | uint16(c.B)})
			rgb64.SetNRGBA64(x, y, color.NRGBA64{uint16(c.R) << 8, uint16(c.G)<<8 | 0x55, uint16(c.B) << 8, 0xffff})
			alpha.SetNRGBA(x, y, color.NRGBA{c.R, c.G, c.B, uint8(x * 4)})
			pal.SetColorIndex(x, y, uint8((x+y)%64))
		}
	}
	return map[string][]byte{
		"rgb8":    encodePNG(t, base),
		"gray8":   encodePNG(t, gray),
		"gray16":  encodePNG(t, gray16),
		"rgb16":   encodePNG(t, rgb64),
		"alpha":   encodePNG(t, alpha),
		"palette": encodePNG(t, pal),
	}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeFull decodes src to a full-size RGB image through the pipeline's
// planes and final conversion (identity geometry).
func decodeFull(t testing.TB, src []byte, useLJ bool) *image.NRGBA {
	t.Helper()
	o, err := openImage(src, useLJ, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	f, err := o.read(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	return decodeFullFrame(f)
}

// decodeFullFrame renders a decoded, upright frame at its own size.
func decodeFullFrame(f *frame) *image.NRGBA {
	w, h := f.w, f.h
	var s sample
	s.g = geom{rw: float64(w), rh: float64(h), vw: w, vh: h, ow: w, oh: h}
	rgb := make([]byte, w*h*3)
	render(rgb, f, &s, new(scratch))
	return rgbToNRGBA(rgb, w, h)
}

func rgbToNRGBA(rgb []byte, w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range w * h {
		copy(img.Pix[4*i:], rgb[3*i:3*i+3])
		img.Pix[4*i+3] = 255
	}
	return img
}

// meanAbsDiff compares the RGB channels of two same-size images.
func meanAbsDiff(a, b *image.NRGBA) float64 {
	sum, n := 0.0, 0
	for i := range a.Pix {
		if i%4 == 3 {
			continue
		}
		sum += math.Abs(float64(a.Pix[i]) - float64(b.Pix[i]))
		n++
	}
	return sum / float64(n)
}

func readTestdataErr(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("testdata", name))
}
