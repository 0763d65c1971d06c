package simd

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// weights returns n non-negative 14-bit weights summing to 1<<14.
func weights(r *rand.Rand, n int) []int16 {
	w := make([]int16, n)
	left := 1 << 14
	for k := range n - 1 {
		v := r.IntN(left + 1)
		if r.IntN(3) == 0 {
			v = 0
		}
		w[k] = int16(v)
		left -= v
	}
	w[n-1] = int16(left)
	r.Shuffle(n, func(i, j int) { w[i], w[j] = w[j], w[i] })
	return w
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		switch r.IntN(8) {
		case 0:
			b[i] = 0
		case 1:
			b[i] = 255
		default:
			b[i] = byte(r.Uint32())
		}
	}
	return b
}

func skipWithout(t *testing.T) {
	if !Available() {
		t.Skip("no AVX2 on this CPU, or built with -tags purego")
	}
}

func TestVRow(t *testing.T) {
	skipWithout(t)
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		width := 16 + r.IntN(100)
		n := 1 + r.IntN(12)
		stride := width + r.IntN(20)
		off := r.IntN(30)
		src := randBytes(r, off+(n-1)*stride+width)
		w := weights(r, n)
		got := make([]byte, width)
		VRow(got, src, off, stride, w)
		want := make([]byte, width)
		for x := range want {
			acc := int32(1 << 13)
			for k := range n {
				acc += int32(src[off+k*stride+x]) * int32(w[k])
			}
			want[x] = byte(acc >> 14)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("VRow(width %d, n %d, stride %d, off %d, w %v):\n got %v\nwant %v", width, n, stride, off, w, got, want)
		}
	}
}

func TestHFilter(t *testing.T) {
	skipWithout(t)
	r := rand.New(rand.NewPCG(3, 4))
	var f HFilter // reused, as a resampler reuses it
	prepared := 0
	modes := map[int]int{} // by npairs: 1-4 pairs of samples, 4 outputs a load; 0: 8 samples, 2 outputs a load
	for range 3000 {
		taps := 2 + r.IntN(7)
		ow := 8 + r.IntN(60)
		rows := 1 + r.IntN(5)
		step := r.Float64() * 4.5 // the scale: up to a downscale by 4.5
		st := make([]int32, ow)
		for i := range st {
			st[i] = int32(float64(i)*step) + int32(r.IntN(2))
		}
		if r.IntN(2) == 0 { // mirrored, as a flip reads them
			for i, j := 0, ow-1; i < j; i, j = i+1, j-1 {
				st[i], st[j] = st[j], st[i]
			}
		}
		hi := int32(0)
		for _, s := range st {
			hi = max(hi, s)
		}
		cw := int(hi) + taps + r.IntN(5)
		tmp := randBytes(r, rows*cw+16)
		w := make([]int16, taps*ow)
		for i := range ow {
			copy(w[taps*i:], weights(r, taps))
		}
		if !f.Prepare(st, w, taps) {
			// Only windows too far apart for one 16-byte load are refused.
			per := 4
			if taps > 4 {
				per = 2
			}
			far := false
			for i := 0; i+per <= ow; i++ {
				lo, hi := st[i], st[i]
				for _, s := range st[i : i+per] {
					lo, hi = min(lo, s), max(hi, s)
				}
				far = far || int(hi-lo)+taps > 16
			}
			if !far {
				t.Fatalf("Prepare(%d taps, st %v) refused windows close enough", taps, st)
			}
			continue
		}
		prepared++
		modes[f.npairs]++
		got := make([]byte, rows*ow)
		f.Plane(got, tmp, rows, cw)
		want := make([]byte, rows*ow)
		for y := range rows {
			for i := range ow {
				acc := int32(1 << 13)
				for k := range taps {
					acc += int32(tmp[y*cw+int(st[i])+k]) * int32(w[taps*i+k])
				}
				want[y*ow+i] = byte(acc >> 14)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("HFilter(%d taps, ow %d, rows %d, cw %d, st %v):\n got %v\nwant %v", taps, ow, rows, cw, st, got, want)
		}
	}
	if prepared < 2000 {
		t.Errorf("only %d of 3000 filters prepared", prepared)
	}
	for m := range 5 {
		if modes[m] < 50 {
			t.Errorf("%d filters of npairs %d; want every kind of kernel run (by npairs: %v)", modes[m], m, modes)
		}
	}
}

// yccRef is image/color's YCbCrToRGB.
func yccRef(y, cb, cr uint8) (uint8, uint8, uint8) {
	clamp := func(v int32) uint8 {
		return uint8(min(max(v, 0), 255))
	}
	yy := int32(y) * 0x10101
	c, d := int32(cb)-128, int32(cr)-128
	return clamp((yy + 91881*d) >> 16), clamp((yy - 22554*c - 46802*d) >> 16), clamp((yy + 116130*c) >> 16)
}

func TestYCbCrRow(t *testing.T) {
	skipWithout(t)
	// Every Y, Cb, Cr: 256 rows of 65536 pixels.
	py, pcb, pcr := make([]byte, 1<<16), make([]byte, 1<<16), make([]byte, 1<<16)
	for i := range py {
		pcb[i], pcr[i] = byte(i), byte(i>>8)
	}
	d := make([]byte, 3<<16)
	for y := range 256 {
		for i := range py {
			py[i] = byte(y)
		}
		YCbCrRow(d, py, pcb, pcr)
		for i := range py {
			r, g, b := yccRef(py[i], pcb[i], pcr[i])
			if d[3*i] != r || d[3*i+1] != g || d[3*i+2] != b {
				t.Fatalf("YCbCr %d,%d,%d: got %v, want %d,%d,%d", py[i], pcb[i], pcr[i], d[3*i:3*i+3], r, g, b)
			}
		}
	}
	// Every length from 16 (the last block moved back), bytes past the row untouched.
	r := rand.New(rand.NewPCG(5, 6))
	for n := 16; n < 80; n++ {
		py, pcb, pcr := randBytes(r, n), randBytes(r, n), randBytes(r, n)
		d := make([]byte, 3*n+5)
		YCbCrRow(d, py, pcb, pcr)
		for i := range n {
			r, g, b := yccRef(py[i], pcb[i], pcr[i])
			if d[3*i] != r || d[3*i+1] != g || d[3*i+2] != b {
				t.Fatalf("n %d, pixel %d: got %v, want %d,%d,%d", n, i, d[3*i:3*i+3], r, g, b)
			}
		}
		if !bytes.Equal(d[3*n:], make([]byte, 5)) {
			t.Fatalf("n %d: wrote past the row", n)
		}
	}
}

// prepared returns a filter of 8 outputs reading samples 0 to 7.
func prepared() *HFilter {
	f := new(HFilter)
	w := make([]int16, 16)
	for i := range 8 {
		w[2*i] = 1 << 14
	}
	if !f.Prepare([]int32{0, 1, 2, 3, 4, 5, 6, 6}, w, 2) {
		panic("not prepared")
	}
	return f
}

func TestBadArgumentsPanic(t *testing.T) {
	skipWithout(t)
	w4 := []int16{1 << 14, 0, 0, 0}
	for name, f := range map[string]func(){
		"VRow short dst":     func() { VRow(make([]byte, 15), make([]byte, 64), 0, 16, w4[:1]) },
		"VRow short src":     func() { VRow(make([]byte, 16), make([]byte, 31), 0, 16, w4[:2]) },
		"VRow no weights":    func() { VRow(make([]byte, 16), make([]byte, 40), 0, 16, nil) },
		"Plane unprepared":   func() { new(HFilter).Plane(make([]byte, 8), make([]byte, 64), 1, 40) },
		"Plane short tmp":    func() { f := prepared(); f.Plane(make([]byte, 8), make([]byte, 19), 1, 19) },
		"Plane short out":    func() { f := prepared(); f.Plane(make([]byte, 15), make([]byte, 64), 2, 24) },
		"YCbCrRow short d":   func() { YCbCrRow(make([]byte, 47), make([]byte, 16), make([]byte, 16), make([]byte, 16)) },
		"YCbCrRow short row": func() { YCbCrRow(make([]byte, 48), make([]byte, 15), make([]byte, 16), make([]byte, 16)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}
