package augment

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.txt")

// goldenPipelines cover every op; the inputs are PNGs, so the hashes do not
// depend on a JPEG decoder.
var goldenPipelines = []string{
	"imagenet-train",
	"imagenet-val",
	"random_resized_crop(size=32,24,scale=0.2:0.9,ratio=0.5:2)|hflip(p=0.5)|color_jitter(brightness=0.4,contrast=0.4,saturation=0.4)",
	"resize(size=40)|center_crop(size=36)|normalize()",
}

func TestGolden(t *testing.T) {
	keys := []struct {
		seed  uint64
		epoch int
		index int64
	}{{seed: 0, epoch: 0, index: 0}, {seed: 42, epoch: 3, index: 7}, {seed: 42, epoch: 4, index: 7}, {seed: 1 << 63, epoch: 1<<31 - 1, index: 1 << 40}}
	var got []string
	inputs := pngVariants(t)
	inputs["large rgb"] = encodePNG(t, natural(300, 200, 9))
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range inputs {
			if !yield(k) {
				return
			}
		}
	})
	for pi, text := range goldenPipelines {
		p, err := ParsePipeline(text, nil)
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]byte, p.RowBytes())
		goOnly := *p // the Go loops give the golden bytes too
		goOnly.noSIMD = true
		dstGo := make([]byte, p.RowBytes())
		for _, name := range names {
			for _, k := range keys {
				if err := p.Apply(dst, inputs[name], SampleRand(k.seed, k.epoch, k.index)); err != nil {
					t.Fatal(err)
				}
				if err := goOnly.Apply(dstGo, inputs[name], SampleRand(k.seed, k.epoch, k.index)); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(dst, dstGo) {
					t.Errorf("p%d %s %d/%d/%d: the Go loops' bytes differ from package simd's", pi, name, k.seed, k.epoch, k.index)
				}
				sum := sha256.Sum256(dst)
				got = append(got, fmt.Sprintf("p%d %s %d/%d/%d %s", pi, strings.ReplaceAll(name, " ", "_"), k.seed, k.epoch, k.index, hex.EncodeToString(sum[:12])))
			}
		}
	}
	path := filepath.Join("testdata", "golden.txt")
	if *update {
		if err := os.WriteFile(path, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	var want []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		want = append(want, sc.Text())
	}
	if len(want) != len(got) {
		t.Fatalf("golden has %d lines, got %d", len(want), len(got))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("got  %s\nwant %s", got[i], want[i])
		}
	}
}

// TestWorkersSameBytes computes the same samples on 1 and on 8 goroutines.
func TestWorkersSameBytes(t *testing.T) {
	srcs := [][]byte{
		encodeJPEG(t, natural(320, 240, 21), 90),
		encodePNG(t, natural(200, 260, 22)),
		readTestdata(t, "video-001.progressive.jpeg"),
		readTestdata(t, "video-001.cmyk.jpeg"),
	}
	p, err := ParsePipeline("random_resized_crop(size=64)|hflip()|color_jitter(brightness=0.2,contrast=0.2,saturation=0.2)", nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 64
	run := func(workers int) [][]byte {
		out := make([][]byte, n)
		var wg sync.WaitGroup
		errs := make([]error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += workers {
					out[i] = make([]byte, p.RowBytes())
					if err := p.Apply(out[i], srcs[i%len(srcs)], SampleRand(7, 1, int64(i))); err != nil {
						errs[w] = err
						return
					}
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	one, eight := run(1), run(8)
	for i := range one {
		if !bytes.Equal(one[i], eight[i]) {
			t.Fatalf("sample %d differs between 1 and 8 goroutines", i)
		}
	}
	if bytes.Equal(one[0], one[4]) {
		t.Error("different indices gave the same augmentation of the same image")
	}
}

// TestRegionDecodeSameBytes checks that stopping the JPEG decode after the
// rows a sample needs gives the bytes of a full decode.
func TestRegionDecodeSameBytes(t *testing.T) {
	if !libjpegAvailable {
		t.Skip("region decoding needs libjpeg-turbo, not available in this build (cgo off or -tags nolibjpeg)")
	}
	srcs := map[string][]byte{
		"4:2:0": encodeJPEG(t, natural(500, 375, 31), 90),
		"gray":  readTestdata(t, "video-005.gray.q50.2x2.progressive.jpeg"),
		"4:1:0": readTestdata(t, "video-001.q50.410.jpeg"),
		"4:4:0": readTestdata(t, "video-001.q50.440.jpeg"),
	}
	p, err := ParsePipeline("random_resized_crop(size=48,scale=0.02:0.3)|hflip()", nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range srcs {
		t.Run(name, func(t *testing.T) {
			full, err := openImage(src, true, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			defer full.close()
			f, err := full.read(nil, true)
			if err != nil {
				t.Fatal(err)
			}
			w, h := full.size()
			partial := 0
			for i := range 40 {
				dst := make([]byte, p.RowBytes())
				if err := p.Apply(dst, src, SampleRand(3, 0, int64(i))); err != nil {
					t.Fatal(err)
				}
				var s sample
				p.plan(&s, w, h, SampleRand(3, 0, int64(i)))
				rows := make([]int, 3)
				rowsNeeded(&full.lay, &s, rows)
				if rows[0] < f.p[0].h {
					partial++
				}
				want := make([]byte, p.RowBytes())
				render(want, f, &s, new(scratch))
				if !bytes.Equal(dst, want) {
					t.Fatalf("sample %d: region decode differs from full decode", i)
				}
			}
			if partial == 0 {
				t.Error("no sample stopped the decode early; the test checks nothing")
			}
		})
	}
}

func TestApplyMultiMatchesApply(t *testing.T) {
	src := encodeJPEG(t, natural(300, 220, 41), 85)
	for _, dec := range []string{"go", "auto"} {
		p, err := ParsePipeline("imagenet-train", &PipelineOptions{Decoder: dec})
		if err != nil {
			t.Fatal(err)
		}
		dsts := make([][]byte, 5)
		rngs := make([]*rand.Rand, 5)
		for e := range dsts {
			dsts[e] = make([]byte, p.RowBytes())
			rngs[e] = SampleRand(9, e, 12)
		}
		if err := p.ApplyMulti(dsts, src, rngs); err != nil {
			t.Fatal(err)
		}
		checked := make([][]byte, len(dsts))
		for e := range checked {
			checked[e] = make([]byte, p.RowBytes())
			rngs[e] = SampleRand(9, e, 12)
		}
		if err := p.ApplyMultiChecked(checked, src, rngs); err != nil {
			t.Fatal(err)
		}
		for e := range dsts {
			if !bytes.Equal(checked[e], dsts[e]) {
				t.Errorf("%s: ApplyMultiChecked output %d differs from ApplyMulti", dec, e)
			}
		}
		// A file damaged past the rows a crop needs: ApplyMulti may succeed,
		// ApplyMultiChecked must not.
		bad := src[:len(src)*9/10]
		if err := p.ApplyMultiChecked(checked[:1], bad, []*rand.Rand{SampleRand(0, 0, 0)}); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: ApplyMultiChecked(truncated) = %v, want ErrDecode", dec, err)
		}
		for e := range dsts {
			one := make([]byte, p.RowBytes())
			if err := p.Apply(one, src, SampleRand(9, e, 12)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(one, dsts[e]) {
				t.Errorf("%s: ApplyMulti output %d differs from Apply", dec, e)
			}
		}
		if bytes.Equal(dsts[0], dsts[1]) {
			t.Errorf("%s: epochs 0 and 1 gave the same augmentation", dec)
		}
	}
}

func TestApplyArgumentErrors(t *testing.T) {
	p, err := ParsePipeline("imagenet-train", nil)
	if err != nil {
		t.Fatal(err)
	}
	src := encodePNG(t, natural(30, 30, 1))
	if err := p.Apply(make([]byte, 10), src, SampleRand(0, 0, 0)); err == nil {
		t.Error("short dst accepted")
	}
	if err := p.Apply(make([]byte, p.RowBytes()), src, nil); err == nil {
		t.Error("random pipeline without a generator accepted")
	}
	if err := p.ApplyMulti(make([][]byte, 2), src, make([]*rand.Rand, 1)); err == nil {
		t.Error("mismatched ApplyMulti arguments accepted")
	}
}

func TestSampleRand(t *testing.T) {
	a := SampleRand(1, 2, 3).Uint64()
	if a != SampleRand(1, 2, 3).Uint64() {
		t.Fatal("same key, different stream")
	}
	seen := map[uint64]string{}
	for _, k := range []struct {
		seed  uint64
		epoch int
		index int64
	}{{1, 2, 3}, {1, 2, 4}, {1, 3, 3}, {2, 2, 3}, {0, 0, 0}, {3, 2, 1}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}} {
		v := SampleRand(k.seed, k.epoch, k.index).Uint64()
		key := fmt.Sprint(k)
		if prev, dup := seen[v]; dup {
			t.Errorf("%s and %s share a stream", prev, key)
		}
		seen[v] = key
	}
}
