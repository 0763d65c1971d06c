package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPeerScripts runs each real peer script of bench/peers (the copies
// built into the binary) with its interpreter on a small dataset of
// gradient images (red rises left to right, green top to bottom) and
// checks its JSON lines and its sample images: uint8 [16, 224, 224, 3],
// every sample a crop of 8–100% of the image's area with an aspect ratio
// of 3/4–4/3, green rising downwards (no vertical flip), red rising or
// falling (the horizontal flip) in both directions among the samples, and
// crops that differ.
//
// A peer whose Python is not installed is skipped, unless it is named in
// $LOADERD_PEERS_REQUIRED (comma-separated; CI names torchvision).
func TestPeerScripts(t *testing.T) {
	data := gradientDataset(t, 48)
	scripts, err := writePeerScripts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	required := strings.Split(os.Getenv("LOADERD_PEERS_REQUIRED"), ",")
	for _, spec := range peerSpecs {
		t.Run(spec.Name, func(t *testing.T) {
			t.Parallel()
			python, err := peerPython(spec, "")
			if errors.Is(err, ErrPeerUnavailable) && !slices.Contains(required, spec.Name) {
				t.Skipf("%v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			variants := append(slices.Clone(spec.Variants), spec.MultiEpoch)
			variants = slices.DeleteFunc(variants, func(v string) bool { return v == "" })
			samples := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			workers := "1"
			if spec.InProcess {
				workers = "0,1" // to compare the CPU counted in-process and in a worker
			}
			cmd := exec.CommandContext(ctx, python, filepath.Join(scripts, spec.Script), data, "--workers", workers,
				"--epochs", "2", "--batch-size", "16", "--variant", strings.Join(variants, ","), "--samples", samples)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s: %v\n%s", cmd, err, stderr.String())
			}
			checkPeerLines(t, spec, variants, stdout.String())
			for _, v := range variants {
				checkPeerSamples(t, filepath.Join(samples, fmt.Sprintf("%s-%s.npy", spec.Name, v)))
			}
		})
	}
}

// checkPeerLines checks the script's JSON lines: one per variant (and per
// worker count, 0 and 1 for a peer that runs in-process too) with its
// figures and versions. In-process, the CPU per image is the script's own;
// in a worker process it must come out about the same, or the workers' CPU
// went uncounted.
func checkPeerLines(t *testing.T, spec peerSpec, variants []string, out string) {
	t.Helper()
	var got []string
	cpuPerImage := map[string]float64{} // variant → in-process CPU seconds per image
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l peerLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Errorf("stdout line %q: %v", sc.Text(), err)
			continue
		}
		if l.Workers != nil && *l.Workers == 0 && spec.InProcess && l.Images > 0 {
			cpuPerImage[l.Variant] = l.CPUSeconds / float64(l.Images)
			continue
		}
		got = append(got, l.Variant)
		if inproc, ok := cpuPerImage[l.Variant]; ok && l.Images > 0 && l.CPUSeconds/float64(l.Images) < 0.6*inproc {
			t.Errorf("line %s: %.2f ms of CPU per image in a worker, %.2f in-process: the workers' CPU is not counted",
				sc.Text(), 1e3*l.CPUSeconds/float64(l.Images), 1e3*inproc)
		}
		if l.System != spec.Name || l.Workers == nil || *l.Workers != 1 || l.ImagesPerSec == nil || *l.ImagesPerSec <= 0 ||
			l.Images <= 0 || l.CPUSeconds <= 0 || l.Epochs != 2 || l.Versions["python"] == "" || len(l.Versions) < 3 {
			t.Errorf("line %s: want %s at 1 worker, images/s, CPU seconds, 2 epochs and versions", sc.Text(), spec.Name)
		}

	}
	if !slices.Equal(got, variants) {
		t.Errorf("lines for variants %v, want %v:\n%s", got, variants, out)
	}
}

// checkPeerSamples reads a .npy of uint8 [16, 224, 224, 3] samples of
// gradientDataset and checks that they are plausible RandomResizedCrops.
func checkPeerSamples(t *testing.T, path string) {
	t.Helper()
	x, shape, err := readNpyUint8(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(shape, []int{16, 224, 224, 3}) {
		t.Fatalf("%s: shape %v, want [16 224 224 3]", path, shape)
	}
	const size, w, h = 224, 400, 300 // gradientDataset's image
	flips, small := 0, 0
	var areas []float64
	for i := range 16 {
		at := func(y, xx, c int) float64 { return float64(x[((i*size+y)*size+xx)*3+c]) }
		colMean := func(xx, c int) float64 {
			s := 0.0
			for y := 0; y < size; y++ {
				s += at(y, xx, c)
			}
			return s / size
		}
		rowMean := func(y, c int) float64 {
			s := 0.0
			for xx := 0; xx < size; xx++ {
				s += at(y, xx, c)
			}
			return s / size
		}
		left, right := colMean(1, 0), colMean(size-2, 0)
		top, bottom := rowMean(1, 1), rowMean(size-2, 1)
		if bottom <= top {
			t.Errorf("%s: sample %d: green %.0f at the top, %.0f at the bottom: flipped vertically?", path, i, top, bottom)
		}
		if left > right {
			flips++
			left, right = right, left
		}
		fx := (right - left) / 255 * size / (size - 2)
		fy := (bottom - top) / 255 * size / (size - 2)
		area, aspect := fx*fy, fx*w/(fy*h)
		areas = append(areas, area)
		if area < 0.08*0.8 || area > 1.05 || aspect < 0.75*0.85 || aspect > 4.0/3*1.15 {
			t.Errorf("%s: sample %d: a crop of %.2f of the area, aspect %.2f; want 0.08–1 and 3/4–4/3", path, i, area, aspect)
		}
		if area < 0.5 {
			small++
		}
	}
	if flips < 2 || flips > 14 {
		t.Errorf("%s: %d of 16 samples flipped; want about half", path, flips)
	}
	if small == 0 {
		t.Errorf("%s: no crop under half the image (areas %.2f): not RandomResizedCrop", path, areas)
	}
}

// gradientDataset writes n 400×300 JPEGs in two classes: red = 255·x/399,
// green = 255·y/299, blue 128.
func gradientDataset(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	const w, h = 400, 300
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{R: uint8(255 * x / (w - 1)), G: uint8(255 * y / (h - 1)), B: 128, A: 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		class := filepath.Join(dir, fmt.Sprintf("class_%d", i%2))
		if err := os.MkdirAll(class, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(class, fmt.Sprintf("img_%03d.jpg", i)), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var npyShape = regexp.MustCompile(`'shape': \(([0-9, ]*)\)`)

// readNpyUint8 reads a NumPy .npy file (format 1.0 or 2.0) of a C-order
// uint8 array: its bytes and shape.
func readNpyUint8(path string) ([]byte, []int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if len(b) < 12 || string(b[:6]) != "\x93NUMPY" {
		return nil, nil, fmt.Errorf("%s: not a .npy file", path)
	}
	var hlen, off int
	switch b[6] {
	case 1:
		hlen, off = int(b[8])|int(b[9])<<8, 10
	default:
		hlen, off = int(b[8])|int(b[9])<<8|int(b[10])<<16|int(b[11])<<24, 12
	}
	if off+hlen > len(b) {
		return nil, nil, fmt.Errorf("%s: truncated header", path)
	}
	header := string(b[off : off+hlen])
	if !strings.Contains(header, "'descr': '|u1'") || !strings.Contains(header, "'fortran_order': False") {
		return nil, nil, fmt.Errorf("%s: header %s, want C-order uint8", path, header)
	}
	m := npyShape.FindStringSubmatch(header)
	if m == nil {
		return nil, nil, fmt.Errorf("%s: no shape in %s", path, header)
	}
	var shape []int
	total := 1
	for _, f := range strings.Split(m[1], ",") {
		if f = strings.TrimSpace(f); f != "" {
			var d int
			fmt.Sscan(f, &d)
			shape = append(shape, d)
			total *= d
		}
	}
	data := b[off+hlen:]
	if len(data) != total {
		return nil, nil, fmt.Errorf("%s: %d bytes for shape %v", path, len(data), shape)
	}
	return data, shape, nil
}
