package augment

import "math"

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
		center := a + (float64(o0+i)+0.5)*scale
		xmin := int(math.Floor(center - support + 0.5))
		xmax := int(math.Floor(center + support + 0.5))
		xmin = max(xmin, 0)
		xmax = min(xmax, inLen, xmin+taps)
		n := xmax - xmin
		sum := 0.0
		for k := range n {
			v := 1 - math.Abs((float64(xmin+k)-center+0.5)/fscale)
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
			q := int(math.Round(fw[k] / sum * wone))
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

func grow32(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n)
	}
	return s[:n]
}

// hpass resamples rows [ay.lo, ay.hi) of p horizontally into tmp, one row
// of ow bytes per source row.
func hpass(tmp []byte, p *plane, ax *axis, lo, hi int) {
	ow := len(ax.start)
	taps := ax.taps
	for y := lo; y < hi; y++ {
		row := p.pix[y*p.stride : y*p.stride+p.w]
		out := tmp[(y-lo)*ow : (y-lo+1)*ow]
		for i := range out {
			s := int(ax.start[i])
			n := int(ax.n[i])
			w := ax.w[i*taps : i*taps+n]
			src := row[s : s+n]
			acc := int32(whalf)
			switch n {
			case 2:
				acc += int32(src[0])*int32(w[0]) + int32(src[1])*int32(w[1])
			case 3:
				acc += int32(src[0])*int32(w[0]) + int32(src[1])*int32(w[1]) + int32(src[2])*int32(w[2])
			case 4:
				acc += int32(src[0])*int32(w[0]) + int32(src[1])*int32(w[1]) + int32(src[2])*int32(w[2]) + int32(src[3])*int32(w[3])
			case 5:
				acc += int32(src[0])*int32(w[0]) + int32(src[1])*int32(w[1]) + int32(src[2])*int32(w[2]) + int32(src[3])*int32(w[3]) + int32(src[4])*int32(w[4])
			default:
				for k, v := range src {
					acc += int32(v) * int32(w[k])
				}
			}
			out[i] = byte(acc >> wbits)
		}
	}
}

// vpass resamples tmp (rows lo.. of ow bytes) vertically into out (oh rows
// of ow bytes, stride ow); acc is scratch of ow int32.
func vpass(out, tmp []byte, ax *axis, lo int, acc []int32) {
	oh := len(ax.start)
	ow := len(acc)
	taps := ax.taps
	for j := range oh {
		s := int(ax.start[j]) - lo
		n := int(ax.n[j])
		w := ax.w[j*taps : j*taps+n]
		dst := out[j*ow : (j+1)*ow]
		if n == 1 { // a single weight is exactly 1.0
			copy(dst, tmp[s*ow:(s+1)*ow])
			continue
		}
		r0 := tmp[s*ow : (s+1)*ow]
		r1 := tmp[(s+1)*ow : (s+2)*ow]
		w0, w1 := int32(w[0]), int32(w[1])
		acc = acc[:len(dst)]
		r0, r1 = r0[:len(acc)], r1[:len(acc)]
		for x := range acc {
			acc[x] = whalf + int32(r0[x])*w0 + int32(r1[x])*w1
		}
		for k := 2; k < n; k++ {
			r := tmp[(s+k)*ow : (s+k+1)*ow]
			r = r[:len(acc)]
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
