package augment

import (
	"math"

	"github.com/loaderd/loaderd/augment/internal/simd"
)

// simdAvailable reports whether the kernels of package simd (AVX2) run
// here; they give the bytes the Go loops give (simd_test.go compares them).
var simdAvailable = simd.Available()

// Fixed-point precision of the resampling weights.
const (
	wbits = 14
	wone  = 1 << wbits
	whalf = 1 << (wbits - 1)
)

// An axis holds the precomputed weights of one resampling direction: output
// i reads n[i] source samples from start[i] with weights w[i*taps:].
type axis struct {
	start []int32
	n     []int32
	w     []int16
	taps  int
	lo    int // first source sample read
	hi    int // one past the last source sample read

	// The same weights, fixed taps each: output i reads fixed samples
	// from fstart[i] with weights fw[i*fixed:].
	fixed  int
	fstart []int32
	fw     []int16
	flo    int // first source sample the fixed windows read
	fhi    int // one past the last

	// The fixed windows prepared for simd.HFilter; hf is unprepared where
	// it does not apply.
	hf   simd.HFilter
	simd bool // hf is prepared
}

// set computes the weights of outputs [o0,o1) of a virtual axis of vn
// samples that spans the source interval [a, a+l) (in plane samples) of a
// plane inLen samples long. The filter is the triangle (bilinear) filter,
// stretched by the downscale factor so that downscaling is antialiased, as
// PIL's and imaging's resamplers do.
func (ax *axis) set(inLen int, a, l float64, vn, o0, o1 int) {
	count := o1 - o0
	scale := l / float64(vn)
	fscale := max(scale, 1)
	support := fscale
	taps := int(math.Ceil(support))*2 + 2
	ax.taps = taps
	ax.start = grow32(ax.start, count)
	ax.n = grow32(ax.n, count)
	if cap(ax.w) < count*taps {
		ax.w = make([]int16, count*taps)
	}
	ax.w = ax.w[:count*taps]
	clear(ax.w)
	ax.lo, ax.hi = inLen, 0
	var fwa [64]float64
	fw := fwa[:]
	if taps > len(fw) {
		fw = make([]float64, taps)
	}
	for i := range count {
		center := a + float64((float64(o0+i)+0.5)*scale)
		xmin := int(math.Floor(center - support + 0.5))
		xmax := int(math.Floor(center + support + 0.5))
		xmin = max(xmin, 0)
		xmax = min(xmax, inLen, xmin+taps)
		n := xmax - xmin
		sum := 0.0
		for k := range n {
			d := float64(xmin+k) - center + 0.5
			if fscale != 1 { // d/1 is d: an upscale skips the division
				d /= fscale
			}
			v := 1 - math.Abs(d)
			if v < 0 {
				v = 0
			}
			fw[k] = v
			sum += v
		}
		if n <= 0 || sum <= 0 { // outside the plane: nearest sample
			xmin = min(max(int(math.Floor(center)), 0), inLen-1)
			n, sum = 1, 1
			fw[0] = 1
		}
		ws := ax.w[i*taps : i*taps+n]
		total, big := 0, 0
		for k := range ws {
			q := int(roundUp(fw[k] / sum * wone))
			ws[k] = int16(q)
			total += q
			if ws[k] > ws[big] {
				big = k
			}
		}
		ws[big] += int16(wone - total) // weights sum to exactly 1.0
		// Trim zero weights at both ends so the loops skip them.
		for n > 1 && ws[0] == 0 {
			copy(ws, ws[1:])
			ws[n-1] = 0
			xmin++
			n--
		}
		for n > 1 && ws[n-1] == 0 {
			n--
		}
		ax.start[i], ax.n[i] = int32(xmin), int32(n)
		ax.lo = min(ax.lo, xmin)
		ax.hi = max(ax.hi, xmin+n)
	}
}

// reach returns a bound of hi as set(inLen, a, l, vn, o0, o1) computes it,
// for o1 > o0 and without computing weights: the end of the last output's
// window before its zero weights are trimmed, or past its nearest sample.
// Both grow with the output, and every window ends before them.
func reach(inLen int, a, l float64, vn, o1 int) int {
	scale := l / float64(vn)
	support := max(scale, 1)
	taps := int(math.Ceil(support))*2 + 2
	center := a + float64((float64(o1-1)+0.5)*scale) // set's center of output o1-1
	xmin := max(int(math.Floor(center-support+0.5)), 0)
	xmax := min(int(math.Floor(center+support+0.5)), inLen, xmin+taps)
	nearest := min(max(int(math.Floor(center)), 0), inLen-1)
	return max(xmax, nearest+1)
}

// roundUp is math.Round for x >= 0 (halves round up), through math.Trunc,
// which compiles to one instruction: x-Trunc(x) is exact.
func roundUp(x float64) float64 {
	t := math.Trunc(x)
	if x-t >= 0.5 {
		t++
	}
	return t
}

// fix gives every output the same number of taps, T (the largest count),
// so that the inner loops have a fixed length: windows are moved inside the
// plane and padded with zero weights, which leaves every sum unchanged.
// hpass reads these fixed windows (vpass the ones set computes).
func (ax *axis) fix(inLen int) {
	t := 1
	for _, n := range ax.n {
		t = max(t, int(n))
	}
	count := len(ax.n)
	ax.fixed = t
	ax.fw = growInt16(ax.fw, count*t)
	clear(ax.fw)
	ax.fstart = grow32(ax.fstart, count)
	ax.flo, ax.fhi = inLen, 0
	for i := range count {
		s, n := int(ax.start[i]), int(ax.n[i])
		ns := min(s, inLen-t)
		copy(ax.fw[i*t+(s-ns):i*t+(s-ns)+n], ax.w[i*ax.taps:i*ax.taps+n])
		ax.fstart[i] = int32(ns)
		ax.flo = min(ax.flo, ns)
		ax.fhi = max(ax.fhi, ns+t)
	}
}

// mirror reverses the order of the outputs of the fixed windows: output i
// becomes output len-1-i, which is how a horizontal flip reads them.
func (ax *axis) mirror() {
	t, st, w := ax.fixed, ax.fstart, ax.fw
	for i, j := 0, len(st)-1; i < j; i, j = i+1, j-1 {
		st[i], st[j] = st[j], st[i]
		wi, wj := w[i*t:i*t+t], w[j*t:j*t+t]
		for k := range wi {
			wi[k], wj[k] = wj[k], wi[k]
		}
	}
}

// prepareSIMD prepares hf for the fixed windows when useSIMD, and
// records whether it could.
func (ax *axis) prepareSIMD(useSIMD bool) {
	ax.simd = useSIMD && ax.hf.Prepare(ax.fstart, ax.fw, ax.fixed)
}

// hSlack is the bytes a buffer that hpass reads needs past its last row:
// simd.HFilter reads 16 bytes from a window's start.
const hSlack = 16

func growInt16(s []int16, n int) []int16 {
	if cap(s) < n {
		return make([]int16, n)
	}
	return s[:n]
}

func grow32(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n)
	}
	return s[:n]
}

// hpass resamples rows of tmp (cw bytes each, holding plane columns
// from ax.flo) horizontally into out, one row of len(ax.fstart) bytes each;
// simd.HFilter does when ax.prepareSIMD prepared it and tmp has hSlack
// bytes past its last row.
func hpass(out, tmp []byte, rows, cw int, ax *axis) {
	ow := len(ax.fstart)
	t := ax.fixed
	st := ax.fstart
	ws := ax.fw[:ow*t]
	if ax.simd && rows > 0 && len(tmp) >= rows*cw+hSlack {
		ax.hf.Plane(out, tmp, rows, cw)
		return
	}
	y := 0
	if t >= 2 && t <= 5 {
		// Two rows at a time: each start and weight is loaded once.
		for ; y+1 < rows; y += 2 {
			hpass2(out[y*ow:(y+2)*ow], tmp[y*cw:(y+1)*cw], tmp[(y+1)*cw:(y+2)*cw], st, ws, t)
		}
	}
	for ; y < rows; y++ {
		row := tmp[y*cw : (y+1)*cw]
		out := out[y*ow : (y+1)*ow]
		out = out[:len(st)]
		switch t {
		case 1:
			for i := range out {
				out[i] = row[st[i]]
			}
		case 2:
			for i := range out {
				s := int(st[i])
				src := row[s : s+2 : s+2]
				w := ws[2*i : 2*i+2 : 2*i+2]
				out[i] = byte((whalf + int32(src[0])*int32(w[0]) + int32(src[1])*int32(w[1])) >> wbits)
			}
		case 3:
			for i := range out {
				s := int(st[i])
				src := row[s : s+3 : s+3]
				w := ws[3*i : 3*i+3 : 3*i+3]
				out[i] = byte((whalf + int32(src[0])*int32(w[0]) + int32(src[1])*int32(w[1]) + int32(src[2])*int32(w[2])) >> wbits)
			}
		case 4:
			for i := range out {
				s := int(st[i])
				src := row[s : s+4 : s+4]
				w := ws[4*i : 4*i+4 : 4*i+4]
				out[i] = byte((whalf + int32(src[0])*int32(w[0]) + int32(src[1])*int32(w[1]) +
					int32(src[2])*int32(w[2]) + int32(src[3])*int32(w[3])) >> wbits)
			}
		case 5:
			for i := range out {
				s := int(st[i])
				src := row[s : s+5 : s+5]
				w := ws[5*i : 5*i+5 : 5*i+5]
				out[i] = byte((whalf + int32(src[0])*int32(w[0]) + int32(src[1])*int32(w[1]) +
					int32(src[2])*int32(w[2]) + int32(src[3])*int32(w[3]) + int32(src[4])*int32(w[4])) >> wbits)
			}
		case 6:
			for i := range out {
				s := int(st[i])
				src := row[s : s+6 : s+6]
				w := ws[6*i : 6*i+6 : 6*i+6]
				out[i] = byte((whalf + int32(src[0])*int32(w[0]) + int32(src[1])*int32(w[1]) +
					int32(src[2])*int32(w[2]) + int32(src[3])*int32(w[3]) +
					int32(src[4])*int32(w[4]) + int32(src[5])*int32(w[5])) >> wbits)
			}
		default:
			for i := range out {
				s := int(st[i])
				src := row[s : s+t : s+t]
				w := ws[t*i : t*i+t : t*i+t]
				acc := int32(whalf)
				for k, v := range src {
					acc += int32(v) * int32(w[k])
				}
				out[i] = byte(acc >> wbits)
			}
		}
	}
}

// hpass2 is hpass on two rows a and b, writing len(st) bytes of each into
// out; t is 2 to 5.
func hpass2(out, a, b []byte, st []int32, ws []int16, t int) {
	n := len(st)
	oa, ob := out[:n], out[n:2*n]
	ob = ob[:len(oa)]
	st = st[:len(oa)]
	switch t {
	case 2:
		for i := range oa {
			s := int(st[i])
			w := ws[2*i : 2*i+2 : 2*i+2]
			w0, w1 := int32(w[0]), int32(w[1])
			p := a[s : s+2 : s+2]
			q := b[s : s+2 : s+2]
			oa[i] = byte((whalf + int32(p[0])*w0 + int32(p[1])*w1) >> wbits)
			ob[i] = byte((whalf + int32(q[0])*w0 + int32(q[1])*w1) >> wbits)
		}
	case 3:
		for i := range oa {
			s := int(st[i])
			w := ws[3*i : 3*i+3 : 3*i+3]
			w0, w1, w2 := int32(w[0]), int32(w[1]), int32(w[2])
			p := a[s : s+3 : s+3]
			q := b[s : s+3 : s+3]
			oa[i] = byte((whalf + int32(p[0])*w0 + int32(p[1])*w1 + int32(p[2])*w2) >> wbits)
			ob[i] = byte((whalf + int32(q[0])*w0 + int32(q[1])*w1 + int32(q[2])*w2) >> wbits)
		}
	case 4:
		for i := range oa {
			s := int(st[i])
			w := ws[4*i : 4*i+4 : 4*i+4]
			w0, w1, w2, w3 := int32(w[0]), int32(w[1]), int32(w[2]), int32(w[3])
			p := a[s : s+4 : s+4]
			q := b[s : s+4 : s+4]
			oa[i] = byte((whalf + int32(p[0])*w0 + int32(p[1])*w1 + int32(p[2])*w2 + int32(p[3])*w3) >> wbits)
			ob[i] = byte((whalf + int32(q[0])*w0 + int32(q[1])*w1 + int32(q[2])*w2 + int32(q[3])*w3) >> wbits)
		}
	case 5:
		for i := range oa {
			s := int(st[i])
			w := ws[5*i : 5*i+5 : 5*i+5]
			w0, w1, w2, w3, w4 := int32(w[0]), int32(w[1]), int32(w[2]), int32(w[3]), int32(w[4])
			p := a[s : s+5 : s+5]
			q := b[s : s+5 : s+5]
			oa[i] = byte((whalf + int32(p[0])*w0 + int32(p[1])*w1 + int32(p[2])*w2 + int32(p[3])*w3 + int32(p[4])*w4) >> wbits)
			ob[i] = byte((whalf + int32(q[0])*w0 + int32(q[1])*w1 + int32(q[2])*w2 + int32(q[3])*w3 + int32(q[4])*w4) >> wbits)
		}
	}
}

// vpass resamples columns [c0, c0+len(acc)) of p vertically into out, one
// row of len(acc) bytes per output of ax; acc is scratch. With useSIMD,
// simd.VRow computes the rows of two or more samples.
func vpass(out []byte, p *plane, c0 int, ax *axis, acc []int32, useSIMD bool) {
	ow := len(acc)
	taps := ax.taps
	for j := range ax.start {
		s := int(ax.start[j])
		n := int(ax.n[j])
		w := ax.w[j*taps : j*taps+n]
		dst := out[j*ow : (j+1)*ow]
		if useSIMD && n >= 2 && ow >= 16 {
			simd.VRow(dst, p.pix, s*p.stride+c0, p.stride, w)
			continue
		}
		row := func(k int) []byte { o := (s+k)*p.stride + c0; return p.pix[o : o+ow][:len(dst)] }
		switch n {
		case 1: // a single weight is exactly 1.0
			copy(dst, row(0))
		case 2:
			r0, r1 := row(0), row(1)
			w0, w1 := int32(w[0]), int32(w[1])
			for x := range dst {
				dst[x] = byte((whalf + int32(r0[x])*w0 + int32(r1[x])*w1) >> wbits)
			}
		case 3:
			r0, r1, r2 := row(0), row(1), row(2)
			w0, w1, w2 := int32(w[0]), int32(w[1]), int32(w[2])
			for x := range dst {
				dst[x] = byte((whalf + int32(r0[x])*w0 + int32(r1[x])*w1 + int32(r2[x])*w2) >> wbits)
			}
		case 4:
			r0, r1, r2, r3 := row(0), row(1), row(2), row(3)
			w0, w1, w2, w3 := int32(w[0]), int32(w[1]), int32(w[2]), int32(w[3])
			for x := range dst {
				dst[x] = byte((whalf + int32(r0[x])*w0 + int32(r1[x])*w1 + int32(r2[x])*w2 + int32(r3[x])*w3) >> wbits)
			}
		default:
			acc := acc[:len(dst)]
			for x := range acc {
				acc[x] = whalf
			}
			for k := range n {
				r := row(k)
				wk := int32(w[k])
				for x := range acc {
					acc[x] += int32(r[x]) * wk
				}
			}
			for x := range dst {
				dst[x] = byte(acc[x] >> wbits)
			}
		}
	}
}
