package augment

import (
	"image"

	"github.com/disintegration/imaging"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchImages returns JPEG files: up to 300 from the ImageFolder at
// $LOADERD_BENCH_DATA, else generated ImageNet-size photos-like images.
func benchImages(b *testing.B) [][]byte {
	b.Helper()
	if dir := os.Getenv("LOADERD_BENCH_DATA"); dir != "" {
		var paths []string
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(strings.ToLower(p), ".jpg") || strings.HasSuffix(strings.ToLower(p), ".jpeg")) {
				paths = append(paths, p)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		slices.Sort(paths)
		if len(paths) == 0 {
			b.Fatalf("no JPEGs under %s", dir)
		}
		step := max(1, len(paths)/300)
		var out [][]byte
		for i := 0; i < len(paths); i += step {
			data, err := os.ReadFile(paths[i])
			if err != nil {
				b.Fatal(err)
			}
			out = append(out, data)
		}
		return out
	}
	var out [][]byte
	for i := range 8 {
		w, h := 500, 375
		if i%2 == 1 {
			w, h = 375, 500
		}
		img := natural(w, h, uint64(i))
		r := rand.New(rand.NewPCG(uint64(i), 3))
		for k := range img.Pix { // grain: photos carry noise
			if k%4 != 3 {
				img.Pix[k] = uint8(min(255, max(0, int(img.Pix[k])+r.IntN(17)-8)))
			}
		}
		out = append(out, encodeJPEG(b, img, 90))
	}
	return out
}

// reportImages reports images/s of wall time and, as the machine may be
// shared, images per CPU second of this process (user+system), which is
// what one core gives when it is not shared.
func reportImages(b *testing.B, n int, cpu0 time.Duration) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "images/s")
	if d := cpuTime() - cpu0; d > 0 {
		b.ReportMetric(float64(n)/d.Seconds(), "images/cpu-s")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkDecode(b *testing.B) {
	imgs := benchImages(b)
	for _, lj := range decoders() {
		b.Run(decName(lj), func(b *testing.B) {
			n := 0
			cpu0 := cpuTime()
			for b.Loop() {
				o, err := openImage(imgs[n%len(imgs)], lj, Limits{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := o.read(nil, false); err != nil {
					b.Fatal(err)
				}
				o.close()
				n++
			}
			reportImages(b, n, cpu0)
		})
	}
}

// BenchmarkOps times each op on decoded images (libjpeg planes when built
// in): planning, the fused resample and the colour ops, without decoding.
func BenchmarkOps(b *testing.B) {
	imgs := benchImages(b)
	frames := make([]*frame, len(imgs))
	for i, src := range imgs {
		o, err := openImage(src, libjpegAvailable, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		frames[i], err = o.read(nil, false)
		if err != nil {
			b.Fatal(err)
		}
		o.close()
	}
	for _, text := range []string{
		"random_resized_crop(size=224)",
		"resize(size=256)|center_crop(size=224)",
		"center_crop(size=224)",
		"center_crop(size=224)|hflip(p=1)",
		"center_crop(size=224)|color_jitter(brightness=0.4,contrast=0.4,saturation=0.4)",
		"center_crop(size=224)|normalize()",
	} {
		p, err := ParsePipeline(text, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, goOnly := range []bool{false, true} {
			name := text
			if goOnly {
				if !simdAvailable {
					continue
				}
				name += "/go-loops"
			}
			b.Run(name, func(b *testing.B) {
				benchOp(b, p, frames, goOnly)
			})
		}
	}
}

// benchOp times render and the colour ops of p on frames.
func benchOp(b *testing.B, p *Pipeline, frames []*frame, goOnly bool) {
	dst := make([]byte, p.RowBytes())
	rgb := make([]byte, 224*224*3)
	sc := &scratch{noSIMD: goOnly}
	f32 := make([]float32, 224*224*3)
	var s sample
	n := 0
	cpu0 := cpuTime()
	for b.Loop() {
		f := frames[n%len(frames)]
		p.plan(&s, f.w, f.h, SampleRand(1, 0, int64(n)))
		out := dst
		if s.norm != nil {
			out = rgb
		}
		render(out, f, &s, sc)
		applyJitter(out, s.jitter)
		if s.norm != nil {
			normalize(dst, out, 224, 224, s.norm, f32)
		}
		n++
	}
	reportImages(b, n, cpu0)
}

// BenchmarkResampleReference times imaging's Linear resize (a plain
// separable resampler on NRGBA) on the crops random_resized_crop draws, for
// comparison with BenchmarkOps/random_resized_crop.
func BenchmarkResampleReference(b *testing.B) {
	imgs := benchImages(b)
	rgbs := make([]*image.NRGBA, len(imgs))
	for i, src := range imgs {
		rgbs[i] = decodeFull(b, src, libjpegAvailable)
	}
	p, err := ParsePipeline("random_resized_crop(size=224)", nil)
	if err != nil {
		b.Fatal(err)
	}
	var s sample
	n := 0
	cpu0 := cpuTime()
	for b.Loop() {
		img := rgbs[n%len(rgbs)]
		p.plan(&s, img.Bounds().Dx(), img.Bounds().Dy(), SampleRand(1, 0, int64(n)))
		g := s.g
		crop := image.Rect(int(g.rx), int(g.ry), int(g.rx+g.rw), int(g.ry+g.rh))
		imaging.Resize(imaging.Crop(img, crop), 224, 224, imaging.Linear)
		n++
	}
	reportImages(b, n, cpu0)
}

// BenchmarkPipeline is the whole sample: decode + augment, one goroutine
// (one core).
func BenchmarkPipeline(b *testing.B) {
	imgs := benchImages(b)
	for _, text := range []string{"imagenet-train", "imagenet-val"} {
		for _, lj := range decoders() {
			dec := decChoice(lj)
			p, err := ParsePipeline(text, &PipelineOptions{Decoder: dec})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(text+"/"+decName(lj), func(b *testing.B) {
				benchApply(b, p, imgs)
			})
			if lj {
				full := *p
				full.fullDecode = true
				b.Run(text+"/"+decName(lj)+"-full-decode", func(b *testing.B) {
					benchApply(b, &full, imgs)
				})
			}
			if lj && simdAvailable { // the fallback where package simd has no kernels
				goOnly := *p
				goOnly.noSIMD = true
				b.Run(text+"/"+decName(lj)+"-go-loops", func(b *testing.B) {
					benchApply(b, &goOnly, imgs)
				})
			}
		}
	}
}

func benchApply(b *testing.B, p *Pipeline, imgs [][]byte) {
	dst := make([]byte, p.RowBytes())
	n := 0
	cpu0 := cpuTime()
	for b.Loop() {
		if err := p.Apply(dst, imgs[n%len(imgs)], SampleRand(1, 0, int64(n))); err != nil {
			b.Fatal(err)
		}
		n++
	}
	reportImages(b, n, cpu0)
}
