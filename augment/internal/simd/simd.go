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

import "slices"

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
//
// The kernels take blocks of 8 outputs and, for each, 16-byte loads of
// the row that VPSHUFB spreads over the outputs' samples: one load for 4
// outputs where their windows fit in 16 bytes (pairs of samples at a time,
// as many pairs as t needs), else one for 2 (8 samples at a time).
type HFilter struct {
	ow     int     // outputs a row; 0: unprepared
	npairs int     // pairs of samples an output (4 outputs a load); 0: 8 samples (2 outputs a load)
	pos    []int32 // the first output of each block of 8
	bases  []int32 // where each 16-byte load of a block starts
	masks  []byte  // VPSHUFB masks: each output's samples in its load
	w      []int16 // weights in the kernel's order, zero past t
	reach  int     // one past the last byte of a row the kernels read
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
	for _, s := range st {
		if s < 0 {
			return false
		}
	}
	if f.prepare(st, w, t, 4) || f.prepare(st, w, t, 2) {
		f.ow = ow
		return true
	}
	return false
}

// prepare lays out the blocks with per outputs a load (4: pairs of
// samples, 2: 8 samples an output) and reports whether every load holds
// its outputs' windows.
func (f *HFilter) prepare(st []int32, w []int16, t, per int) bool {
	ow := len(st)
	nb := (ow + 7) / 8
	loads := 8 / per
	f.npairs = 0
	if per == 4 {
		f.npairs = (t + 1) / 2
	}
	f.pos = grow(f.pos, nb)
	f.bases = grow(f.bases, nb*loads)
	f.reach = 0
	for b := range nb {
		p := min(8*b, ow-8) // the last block ends at the last output
		f.pos[b] = int32(p)
		for l := range loads {
			win := st[p+l*per : p+(l+1)*per]
			lo, hi := slices.Min(win), slices.Max(win)
			if int(hi-lo)+t > 16 {
				return false
			}
			f.bases[b*loads+l] = lo
			f.reach = max(f.reach, int(lo)+16)
		}
	}
	if per == 4 {
		// Block b, pair j: 32 mask bytes, a word (low byte: the sample,
		// high byte: zero) for samples 2j and 2j+1 of each output, and
		// their 16 weights, in the same order.
		n := nb * f.npairs * 16
		f.masks = grow(f.masks, 2*n)
		f.w = grow(f.w, n)
		for b := range nb {
			p := int(f.pos[b])
			for j := range f.npairs {
				m := f.masks[(b*f.npairs+j)*32:][:32]
				ws := f.w[(b*f.npairs+j)*16:][:16]
				for o := range 8 {
					d := int(st[p+o] - f.bases[b*2+o/4])
					for q := range 2 {
						k := 2*j + q
						i := 2*o + q // word i of the 16
						m[2*i], m[2*i+1], ws[i] = 0x80, 0x80, 0
						if k < t {
							m[2*i], ws[i] = byte(d+k), w[(p+o)*t+k]
						}
					}
				}
			}
		}
		return true
	}
	// Block b: 64 mask bytes, 8 sample bytes of each output; the weights
	// 8 an output, by output.
	f.masks = grow(f.masks, nb*64)
	f.w = grow(f.w, ow*8)
	clear(f.w)
	for i := range ow {
		copy(f.w[i*8:i*8+t], w[i*t:i*t+t])
	}
	for b := range nb {
		p := int(f.pos[b])
		for o := range 8 {
			m := f.masks[b*64+o*8:][:8]
			d := int(st[p+o] - f.bases[b*4+o/2])
			for k := range m {
				m[k] = 0x80 // reads 0, weighted 0
				if k < t {
					m[k] = byte(d + k)
				}
			}
		}
	}
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
	nb := len(f.pos)
	for y := range rows {
		if f.npairs > 0 {
			hpairsAVX2(&out[y*ow], &tmp[y*cw], &f.pos[0], &f.bases[0], &f.masks[0], &f.w[0], nb, f.npairs)
		} else {
			hrow8AVX2(&out[y*ow], &tmp[y*cw], &f.pos[0], &f.bases[0], &f.masks[0], nb, &f.w[0], &perm8[0])
		}
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

// perm8 puts hrow8AVX2's sums in output order (VPERMD indices).
var perm8 = [8]int32{0, 4, 1, 5, 2, 6, 3, 7}

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
