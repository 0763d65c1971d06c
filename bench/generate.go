package bench

import (
	"bufio"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sync/errgroup"
)

// ErrOptions reports an invalid argument or option.
var ErrOptions = errors.New("bench: invalid options")

// GenerateDataset writes n JPEG images into dir as an ImageFolder of
// classes classes (dir/class_00/img_00000.jpg, ...; image i belongs to
// class i % classes). Images are about 400×350 pixels of smooth gradients,
// soft discs and noise, encoded at quality 75–95; the same (n, classes,
// seed) always gives the same files.
func GenerateDataset(dir string, n, classes int, seed uint64) error {
	if n <= 0 || classes <= 0 || classes > n {
		return fmt.Errorf("%w: GenerateDataset n=%d classes=%d", ErrOptions, n, classes)
	}
	for c := range classes {
		if err := os.MkdirAll(filepath.Join(dir, className(c)), 0o755); err != nil {
			return fmt.Errorf("bench: generate: %w", err)
		}
	}
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range n {
		g.Go(func() error {
			path := filepath.Join(dir, className(i%classes), fmt.Sprintf("img_%05d.jpg", i))
			img, quality := generateImage(seed, i)
			return writeJPEG(path, img, quality)
		})
	}
	return g.Wait()
}

func className(c int) string { return fmt.Sprintf("class_%02d", c) }

// generateImage draws image i: a separable colour gradient with a few
// sinusoids, soft-edged discs and per-pixel noise.
func generateImage(seed uint64, i int) (*image.RGBA, int) {
	rng := rand.New(rand.NewPCG(seed, uint64(i)*0x9E3779B97F4A7C15+1))
	w := 360 + rng.IntN(81) // 360..440
	h := 310 + rng.IntN(81) // 310..390
	img := image.NewRGBA(image.Rect(0, 0, w, h))

	// Per-channel column and row profiles: base + gradient + one sinusoid.
	var col, row [3][]float64
	for c := range 3 {
		col[c], row[c] = make([]float64, w), make([]float64, h)
		base := 40 + 120*rng.Float64()
		gx, gy := 80*(rng.Float64()-0.5), 80*(rng.Float64()-0.5)
		fx, fy := 1+5*rng.Float64(), 1+5*rng.Float64()
		ax, ay := 30*rng.Float64(), 30*rng.Float64()
		px, py := 2*math.Pi*rng.Float64(), 2*math.Pi*rng.Float64()
		for x := range w {
			t := float64(x) / float64(w)
			col[c][x] = base + gx*t + ax*math.Sin(2*math.Pi*fx*t+px)
		}
		for y := range h {
			t := float64(y) / float64(h)
			row[c][y] = gy*t + ay*math.Sin(2*math.Pi*fy*t+py)
		}
	}
	noise := 4 + 12*rng.Float64()
	state := rng.Uint64() | 1
	for y := range h {
		o := y * img.Stride
		for x := range w {
			state ^= state << 13 // xorshift64: cheap noise
			state ^= state >> 7
			state ^= state << 17
			for c := range 3 {
				r := float64(int((state>>(c*16))&0xff)-128) / 128
				img.Pix[o+4*x+c] = clamp8(col[c][x] + row[c][y] + noise*r)
			}
			img.Pix[o+4*x+3] = 0xff
		}
	}
	// Soft discs blended over the background.
	for range 3 + rng.IntN(5) {
		cx, cy := rng.Float64()*float64(w), rng.Float64()*float64(h)
		rad := 20 + rng.Float64()*float64(min(w, h))/3
		clr := [3]float64{255 * rng.Float64(), 255 * rng.Float64(), 255 * rng.Float64()}
		x0, x1 := max(0, int(cx-rad-4)), min(w, int(cx+rad+4))
		y0, y1 := max(0, int(cy-rad-4)), min(h, int(cy+rad+4))
		for y := y0; y < y1; y++ {
			for x := x0; x < x1; x++ {
				d := math.Hypot(float64(x)-cx, float64(y)-cy)
				a := math.Min(1, math.Max(0, (rad-d)/4)) * 0.8
				if a == 0 {
					continue
				}
				p := img.Pix[y*img.Stride+4*x:]
				for c := range 3 {
					p[c] = clamp8(float64(p[c])*(1-a) + clr[c]*a)
				}
			}
		}
	}
	return img, 75 + rng.IntN(21)
}

func clamp8(v float64) uint8 {
	switch {
	case v <= 0:
		return 0
	case v >= 255:
		return 255
	}
	return uint8(v + 0.5)
}

func writeJPEG(path string, img image.Image, quality int) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: generate: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("bench: generate: %w", cerr)
		}
	}()
	bw := bufio.NewWriter(f)
	if err := jpeg.Encode(bw, img, &jpeg.Options{Quality: quality}); err != nil {
		return fmt.Errorf("bench: generate %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("bench: generate: %w", err)
	}
	return nil
}
