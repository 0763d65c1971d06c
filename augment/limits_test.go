package augment

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// bitWriter writes JPEG entropy-coded data: MSB first, 0xFF stuffed with
// 0x00, the last byte padded with ones.
type bitWriter struct {
	out  *bytes.Buffer
	acc  uint32
	nacc uint
}

func (w *bitWriter) bits(v uint32, n uint) {
	for n > 0 {
		n--
		w.acc = w.acc<<1 | (v>>n)&1
		w.nacc++
		if w.nacc == 8 {
			w.out.WriteByte(byte(w.acc))
			if w.acc == 0xFF {
				w.out.WriteByte(0)
			}
			w.acc, w.nacc = 0, 0
		}
	}
}

func (w *bitWriter) flush() {
	if w.nacc > 0 {
		w.bits(0xFF, 8-w.nacc)
	}
}

// eobRun codes an end-of-band run of n blocks with the AC table of
// progressiveJPEG: symbol 0xR0 (code R, 4 bits) and R extra bits.
func (w *bitWriter) eobRun(n int) {
	for n > 0 {
		run := min(n, 32767)
		r := 0
		for 1<<(r+1) <= run {
			r++
		}
		w.bits(uint32(r), 4)
		w.bits(uint32(run-1<<r), uint(r))
		n -= run
	}
}

// progressiveJPEG writes a valid progressive JPEG of a w×h image of ncomp
// components (all 1×1 sampled) whose coefficients are all zero (mid-gray),
// with the longest valid progression: DC first and 13 refinements, and for
// each component and AC coefficient a first scan and 13 refinements (896
// scans a component). At most `scans` scans are written (0: all).
func progressiveJPEG(w, h, ncomp, scans int) []byte {
	var b bytes.Buffer
	seg := func(m byte, p []byte) {
		b.Write([]byte{0xFF, m, byte((len(p) + 2) >> 8), byte(len(p) + 2)})
		b.Write(p)
	}
	b.Write([]byte{0xFF, 0xD8})
	seg(0xDB, append([]byte{0}, bytes.Repeat([]byte{1}, 64)...))
	sof := []byte{8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), byte(ncomp)}
	for c := range ncomp {
		sof = append(sof, byte(c+1), 0x11, 0)
	}
	seg(0xC2, sof)
	// DC table 0: one symbol (category 0), code "0". AC table 0: the 15
	// end-of-band-run symbols 0x00..0xE0, 4-bit codes 0..14.
	dht := append([]byte{0x00, 1}, make([]byte, 15)...)
	dht = append(dht, 0)
	ac := []byte{0x10, 0, 0, 0, 15}
	ac = append(ac, make([]byte, 12)...)
	for r := range 15 {
		ac = append(ac, byte(r<<4))
	}
	seg(0xC4, append(dht, ac...))
	blocks := ((w + 7) / 8) * ((h + 7) / 8)
	n := 0
	scan := func(comps []int, ss, se, ah, al int, data func(*bitWriter)) {
		if scans > 0 && n >= scans {
			return
		}
		n++
		p := []byte{byte(len(comps))}
		for _, c := range comps {
			p = append(p, byte(c+1), 0x00)
		}
		seg(0xDA, append(p, byte(ss), byte(se), byte(ah<<4|al)))
		bw := &bitWriter{out: &b}
		data(bw)
		bw.flush()
	}
	all := make([]int, ncomp)
	for c := range all {
		all[c] = c
	}
	perBlock := func(nbits int) func(*bitWriter) { // each block of each component
		return func(bw *bitWriter) {
			for range blocks * ncomp {
				bw.bits(0, uint(nbits))
			}
		}
	}
	if ncomp == 1 {
		perBlock = func(nbits int) func(*bitWriter) {
			return func(bw *bitWriter) {
				for range blocks {
					bw.bits(0, uint(nbits))
				}
			}
		}
	}
	scan(all, 0, 0, 0, 13, perBlock(1)) // DC diff category 0: code "0"
	for a := 13; a >= 1; a-- {
		scan(all, 0, 0, a, a-1, perBlock(1)) // one correction bit a block
	}
	for c := range ncomp {
		for k := 1; k < 64; k++ {
			scan([]int{c}, k, k, 0, 13, func(bw *bitWriter) { bw.eobRun(blocks) })
			for a := 13; a >= 1; a-- {
				scan([]int{c}, k, k, a, a-1, func(bw *bitWriter) { bw.eobRun(blocks) })
			}
		}
	}
	b.Write([]byte{0xFF, 0xD9})
	return b.Bytes()
}

func TestScanBomb(t *testing.T) {
	bomb := progressiveJPEG(64, 64, 3, 0) // 2660 scans, about 30 KB
	const nscans = 14 + 3*63*14
	// Raised limits: the file is valid, and both decoders decode it to gray.
	big := Limits{MaxScans: nscans}
	for _, lj := range decoders() {
		o, err := openImage(bomb, lj, big)
		if err != nil {
			t.Fatalf("%s: raised limits: %v", decName(lj), err)
		}
		f, err := o.read(nil, true)
		if err != nil {
			t.Fatalf("%s: raised limits: %v", decName(lj), err)
		}
		img := decodeFullFrame(f)
		for i, v := range img.Pix {
			if i%4 != 3 && (v < 127 || v > 129) {
				t.Fatalf("%s: pixel byte %d = %d, want mid-gray", decName(lj), i, v)
			}
		}
		o.close()
	}
	tests := []struct {
		name string
		src  []byte
		lim  Limits
		want string
	}{
		{name: "thousands of scans, default limit", src: bomb, want: "more than 500 scans (scan limit)"},
		{name: "one scan over MaxScans", src: bomb, lim: Limits{MaxScans: nscans - 1}, want: "scan limit"},
		{name: "scan work", src: bomb, lim: Limits{MaxScans: nscans, MaxScanSamples: 1 << 20}, want: "scan work limit"},
		// 4096×4096, 300 scans: under the scan limit, but 300 scans of 16.7 Mpx.
		{name: "large image, 300 scans", src: progressiveJPEG(4096, 4096, 1, 300), want: "more than 2147483648 samples (scan work limit)"},
	}
	for _, tc := range tests {
		for _, lj := range decoders() {
			t.Run(tc.name+"/"+decName(lj), func(t *testing.T) {
				dec := decChoice(lj)
				p, err := ParsePipeline("imagenet-val", &PipelineOptions{Decoder: dec, Limits: tc.lim})
				if err != nil {
					t.Fatal(err)
				}
				err = p.Apply(make([]byte, p.RowBytes()), tc.src, nil)
				if !errors.Is(err, ErrDecode) || !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Apply = %v, want ErrTooLarge naming %q", err, tc.want)
				}
			})
		}
		if err := Check(tc.src, tc.lim); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: Check = %v, want ErrTooLarge", tc.name, err)
		}
	}
	// Exactly at the limits passes.
	// The 14 DC scans visit three components, the others one.
	const samples = (3*14 + 3*63*14) * 64 * 64
	if err := checkJPEGCost(bomb, Limits{MaxScans: nscans, MaxScanSamples: samples}); err != nil {
		t.Errorf("at the limits: %v", err)
	}
	if err := checkJPEGCost(bomb, Limits{MaxScans: nscans, MaxScanSamples: samples - 1}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one sample over the limit: %v", err)
	}
}

// BenchmarkScanBomb compares refusing a 2048×2048 scan bomb (2660 scans,
// 390 KB) at the default limits with decoding it under raised ones.
func BenchmarkScanBomb(b *testing.B) {
	bomb := progressiveJPEG(2048, 2048, 3, 0)
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			if err := Check(bomb, Limits{}); !errors.Is(err, ErrTooLarge) {
				b.Fatal(err)
			}
		}
	})
	for _, lj := range decoders() {
		b.Run("decode/"+decName(lj), func(b *testing.B) {
			for b.Loop() {
				o, err := openImage(bomb, lj, Limits{MaxScans: 1 << 20, MaxScanSamples: 1 << 62})
				if err == nil {
					_, err = o.read(nil, true)
					o.close()
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestScanBombFile keeps testdata/scanbomb.jpg, the scan bomb other
// packages' tests put in a dataset (loader: undecodable, naming the
// limit), equal to what progressiveJPEG writes; -update rewrites it.
func TestScanBombFile(t *testing.T) {
	const path = "testdata/scanbomb.jpg"
	want := progressiveJPEG(64, 64, 3, 0)
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from progressiveJPEG(64, 64, 3, 0): go test ./augment -run TestScanBombFile -update", path)
	}
	if err := Check(got, Limits{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Check(%s) = %v; want ErrTooLarge", path, err)
	}
}
