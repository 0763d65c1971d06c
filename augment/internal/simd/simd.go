// Package simd holds AVX2 kernels of package augment's resampler and
// colour conversion. Each gives exactly the bytes of its Go counterpart in
// augment (whose tests compare them): the arithmetic is the same 32-bit
// integer arithmetic, vectorised.
//
// Every function panics unless Available, and panics (rather than read or
// write out of bounds) when its slices are too short for its arguments.
// The weights of the resampling kernels must be non-negative 14-bit fixed
// point numbers (1<<14 is 1.0) that sum to 1<<14, so that every result is
// in [0, 255]: the kernels then never saturate where Go's byte conversion
// would wrap.
package simd

// Available reports whether this build on this CPU has the kernels
// (amd64 with AVX2, not built with -tags purego).
func Available() bool { return available }

// VRow resamples vertically: for x < len(dst),
//
//	dst[x] = (1<<13 + Σ_k src[off+k*stride+x]·w[k]) >> 14,  k < len(w).
//
// It needs len(dst) >= 16 and len(w) >= 1.
func VRow(dst, src []byte, off, stride int, w []int16) {
	n := len(w)
	if !available || len(dst) < 16 || n < 1 || off < 0 || stride < 0 || off+(n-1)*stride+len(dst) > len(src) {
		panic("simd: VRow: bad arguments")
	}
	vrowAVX2(dst, &src[off], stride, n, &w[0])
}

// An HFilter is a horizontal resampling prepared for its kernels: output i
// of a row is
//
//	(1<<13 + Σ_k row[st[i]+k]·w[t·i+k]) >> 14,  k < t,
//
// for the windows st, weights w and width t given to Prepare. The zero
// value is unprepared; an HFilter's buffers are reused by the next Prepare.
type HFilter struct {
	ow    int     // outputs a row; 0: unprepared
	pad   int     // samples a window in the kernels: 4 or 8
	pos   []int32 // the first output of each block of 8
	bases []int32 // where each 16-byte load of a block starts
	masks []byte  // VPSHUFB masks: each output's samples in its load
	w     []int16 // pad weights an output, zero past t
	reach int     // one past the last byte of a row the kernels read
}

// Prepare makes f compute len(st) outputs from windows of t samples, st[i]
// the first of output i, w[t·i:t·i+t] its weights. It reports false, and
// leaves f unprepared, when the kernels cannot: without them, for t
// outside [2, 8], fewer than 8 outputs, or windows of outputs that share a
// 16-byte load lying further apart (a downscale by more than 4).
func (f *HFilter) Prepare(st []int32, w []int16, t int) bool {
	f.ow = 0
	ow := len(st)
	if !available || t < 2 || t > 8 || ow < 8 || len(w) < t*ow {
		return false
	}
	pad := 4
	if t > 4 {
		pad = 8
	}
	per := 16 / pad // outputs a load serves
	nb := (ow + 7) / 8
	f.pos = grow(f.pos, nb)
	f.bases = grow(f.bases, nb*8/per)
	f.masks = grow(f.masks, nb*8*pad)
	f.w = grow(f.w, ow*pad)
	clear(f.w)
	for i := range ow {
		copy(f.w[i*pad:i*pad+t], w[i*t:i*t+t])
	}
	reach := 0
	for b := range nb {
		p := min(8*b, ow-8) // the last block ends at the last output
		f.pos[b] = int32(p)
		for l := range 8 / per {
			first := p + l*per
			base := st[first]
			for _, s := range st[first : first+per] {
				if s < 0 {
					return false
				}
				base = min(base, s)
			}
			f.bases[b*8/per+l] = base
			reach = max(reach, int(base)+16)
			for j := range per {
				m := f.masks[(b*8+l*per+j)*pad:][:pad]
				d := int(st[first+j] - base)
				if d+t > 16 {
					return false
				}
				for k := range m {
					m[k] = 0x80 // reads 0, weighted 0
					if k < t {
						m[k] = byte(d + k)
					}
				}
			}
		}
	}
	f.ow, f.pad, f.reach = ow, pad, reach
	return true
}

// Plane resamples rows rows of tmp, cw bytes apart, into out (len(st)
// bytes a row). Every 16-byte load must lie inside tmp: a buffer of rows
// rows whose windows end inside them needs 16 bytes more.
func (f *HFilter) Plane(out, tmp []byte, rows, cw int) {
	ow := f.ow
	if ow == 0 || rows < 1 || cw < 1 || len(out) < rows*ow || (rows-1)*cw+f.reach > len(tmp) {
		panic("simd: HFilter.Plane: unprepared, or bad arguments")
	}
	kernel, perm := hrow4AVX2, &perm4
	if f.pad == 8 {
		kernel, perm = hrow8AVX2, &perm8
	}
	for y := range rows {
		kernel(&out[y*ow], &tmp[y*cw], &f.pos[0], &f.bases[0], &f.masks[0], len(f.pos), &f.w[0], &perm[0])
	}
}

func grow[E any](s []E, n int) []E {
	if cap(s) < n {
		return make([]E, n)
	}
	return s[:n]
}

// YCbCrRow converts full-range YCbCr to interleaved RGB as image/color's
// YCbCrToRGB does: d[3x], d[3x+1], d[3x+2] get the R, G, B of py[x],
// pcb[x], pcr[x] for x < len(py). It needs len(py) >= 16.
func YCbCrRow(d, py, pcb, pcr []byte) {
	n := len(py)
	if !available || n < 16 || len(pcb) < n || len(pcr) < n || len(d) < 3*n {
		panic("simd: YCbCrRow: bad arguments")
	}
	yccRowAVX2(&d[0], &py[0], &pcb[0], &pcr[0], n, &yccK)
}

// Output orders of the horizontal kernels' partial sums (VPERMD indices).
var (
	perm4 = [8]int32{0, 1, 4, 5, 2, 3, 6, 7}
	perm8 = [8]int32{0, 4, 1, 5, 2, 6, 3, 7}
)

// yccConsts are yccRowAVX2's constants: the conversion's, then the
// shuffles that interleave 16 R, G and B bytes into three rows of 16.
type yccConsts struct {
	k    [8]int32
	shuf [9][16]byte
}

var yccK = func() yccConsts {
	k := yccConsts{k: [8]int32{128, 0x10101, 91881, -22554, -46802, 116130}}
	for part := range 3 { // bytes 16*part … 16*part+15 of the output
		for c := range 3 { // from channel c
			m := &k.shuf[3*part+c]
			for i := range m {
				m[i] = 0x80 // zero
				if b := 16*part + i; b%3 == c {
					m[i] = byte(b / 3)
				}
			}
		}
	}
	return k
}()
