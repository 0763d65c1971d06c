package augment

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/loaderd/loaderd/augment/internal/simd"
)

// geom is the composition of the geometric ops: the source rectangle
// (upright image pixels) scaled onto a virtual vw×vh image, the output
// window of that virtual image (it may extend past it: zero padding), and
// a horizontal flip of the window.
type geom struct {
	rx, ry, rw, rh float64
	vw, vh         int
	ox, oy, ow, oh int
	flip           bool
}

func (g *geom) crop(top, left, h, w int) {
	if g.flip {
		left = g.ow - left - w
	}
	g.ox += left
	g.oy += top
	g.ow, g.oh = w, h
}

func (g *geom) resize(w, h int) {
	sx := g.rw / float64(g.vw)
	sy := g.rh / float64(g.vh)
	g.rx += float64(g.ox) * sx
	g.ry += float64(g.oy) * sy
	g.rw = float64(g.ow) * sx
	g.rh = float64(g.oh) * sy
	g.vw, g.vh = w, h
	g.ox, g.oy, g.ow, g.oh = 0, 0, w, h
}

// Colour op kinds after planning.
const (
	jBrightness = iota
	jContrast
	jSaturation
)

type jitterStep struct {
	kind int
	f    int32 // factor, 16-bit fixed point
}

// sample is everything one output needs: the random draws are made.
type sample struct {
	g      geom
	jitter []jitterStep
	norm   *op
}

// plan draws the random parameters of every op for an upright w×h image.
// A nil rng draws nothing: random ops then act as if not applied.
func (p *Pipeline) plan(s *sample, w, h int, rng *rand.Rand) {
	s.g = geom{rw: float64(w), rh: float64(h), vw: w, vh: h, ow: w, oh: h}
	s.jitter = s.jitter[:0]
	s.norm = nil
	for i := range p.ops {
		o := &p.ops[i]
		g := &s.g
		switch o.kind {
		case opRandomResizedCrop:
			if rng != nil {
				top, left, ch, cw := rrcParams(g.ow, g.oh, o.scale, o.ratio, rng)
				g.crop(top, left, ch, cw)
			}
			g.resize(o.w, o.h)
		case opResize:
			nh, nw := o.h, o.w
			if !o.exact {
				nh, nw = resizeShorter(g.ow, g.oh, o.h)
			}
			g.resize(nw, nh)
		case opCenterCrop:
			g.crop(centerOffset(g.oh, o.h), centerOffset(g.ow, o.w), o.h, o.w)
		case opHFlip:
			flip := o.p >= 1 // p is 0 or 1 when rng may be nil
			if rng != nil {
				flip = rng.Float64() < o.p
			}
			if flip {
				g.flip = !g.flip
			}
		case opColorJitter:
			if rng == nil {
				continue
			}
			// torchvision: a random order, then a factor per enabled op.
			order := [3]int{0, 1, 2}
			for k := 2; k > 0; k-- {
				j := rng.IntN(k + 1)
				order[k], order[j] = order[j], order[k]
			}
			var f [3]int32
			for k, x := range o.jitter {
				if x > 0 {
					lo, hi := max(0, 1-x), 1+x
					f[k] = int32(math.Round((lo + float64((hi-lo)*rng.Float64())) * 65536))
				}
			}
			for _, k := range order {
				if o.jitter[k] > 0 {
					s.jitter = append(s.jitter, jitterStep{kind: k, f: f[k]})
				}
			}
		case opNormalize:
			s.norm = o
		}
	}
}

// rrcParams is torchvision's RandomResizedCrop.get_params: returns the crop
// (top, left, height, width) of a w×h image.
func rrcParams(w, h int, scale, ratio [2]float64, rng *rand.Rand) (top, left, ch, cw int) {
	area := float64(w) * float64(h)
	lr0, lr1 := math.Log(ratio[0]), math.Log(ratio[1])
	for range 10 {
		target := area * (scale[0] + float64((scale[1]-scale[0])*rng.Float64()))
		aspect := math.Exp(lr0 + float64((lr1-lr0)*rng.Float64()))
		cw = int(math.RoundToEven(math.Sqrt(target * aspect)))
		ch = int(math.RoundToEven(math.Sqrt(target / aspect)))
		if cw > 0 && cw <= w && ch > 0 && ch <= h {
			top = rng.IntN(h - ch + 1)
			left = rng.IntN(w - cw + 1)
			return top, left, ch, cw
		}
	}
	in := float64(w) / float64(h)
	switch {
	case in < ratio[0]:
		cw = w
		ch = int(math.RoundToEven(float64(cw) / ratio[0]))
	case in > ratio[1]:
		ch = h
		cw = int(math.RoundToEven(float64(ch) * ratio[1]))
	default:
		cw, ch = w, h
	}
	return (h - ch) / 2, (w - cw) / 2, ch, cw
}

// centerOffset is torchvision's center_crop offset, padding included.
func centerOffset(in, out int) int {
	if out > in {
		return -((out - in) / 2)
	}
	return int(math.RoundToEven(float64(in-out) / 2))
}

// scratch is per-call working memory, pooled.
type scratch struct {
	noSIMD bool // the Go loops only (tests), not the kernels of package simd
	ax, ay axis
	tmp    []byte
	acc    []int32
	planes [3][]byte
	rgb    []byte
	f32    []float32
	s      []sample
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// bufPool recycles decoded planes (they are large: keep them off the GC).
var bufPool sync.Pool

func getBuf(n int) []byte {
	if b, ok := bufPool.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

func putBuf(b []byte) { bufPool.Put(&b) }

func growBytes(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// valid returns the output window columns or rows [a,b) inside the virtual image.
func validRange(o, n, v int) (a, b int) {
	a = max(0, -o)
	b = min(n, v-o)
	if b < a {
		b = a
	}
	return a, b
}

// rowsNeeded raises rows[c], for each plane c of the layout f, to one past
// the last row the resampler reads for sample s, or a row or two more.
func rowsNeeded(f *frame, s *sample, rows []int) {
	g := &s.g
	y0, y1 := validRange(g.oy, g.oh, g.vh)
	if y1 <= y0 {
		return
	}
	for c := range f.n {
		pl := &f.p[c]
		rows[c] = max(rows[c], reach(pl.h, g.ry/float64(pl.fy), g.rh/float64(pl.fy), g.vh, g.oy+y1))
	}
}

// render resamples f through s.g into rgb (oh×ow×3, interleaved).
func render(rgb []byte, f *frame, s *sample, sc *scratch) {
	g := &s.g
	useSIMD := simdAvailable && !sc.noSIMD
	x0, x1 := validRange(g.ox, g.ow, g.vw)
	y0, y1 := validRange(g.oy, g.oh, g.vh)
	vw, vh := x1-x0, y1-y0
	if vw <= 0 || vh <= 0 {
		clear(rgb)
		return
	}
	var out [3][]byte
	c0, cw := 0, 0
	for c := range f.n {
		pl := &f.p[c]
		// Planes of the same geometry (Cb and Cr) share their weights.
		if c == 0 || pl.w != f.p[c-1].w || pl.h != f.p[c-1].h || pl.fx != f.p[c-1].fx || pl.fy != f.p[c-1].fy {
			sc.ax.set(pl.w, g.rx/float64(pl.fx), g.rw/float64(pl.fx), g.vw, g.ox+x0, g.ox+x1)
			sc.ax.fix(pl.w)
			sc.ay.set(pl.h, g.ry/float64(pl.fy), g.rh/float64(pl.fy), g.vh, g.oy+y0, g.oy+y1)
			// Vertical first, over the columns the horizontal pass reads;
			// the horizontal pass then runs on output rows only.
			c0, cw = sc.ax.flo, sc.ax.fhi-sc.ax.flo
			for i := range sc.ax.fstart {
				sc.ax.fstart[i] -= int32(c0)
			}
			// Flipped, output column x0+x comes from window column
			// ow-1-(x0+x): the planes' rows come out mirrored.
			if g.flip {
				sc.ax.mirror()
			}
			sc.ax.prepareSIMD(useSIMD)
		}
		sc.tmp = growBytes(sc.tmp, vh*cw+hSlack)
		if cap(sc.acc) < cw {
			sc.acc = make([]int32, cw)
		}
		vpass(sc.tmp, pl, c0, &sc.ay, sc.acc[:cw], useSIMD)
		sc.planes[c] = growBytes(sc.planes[c], vw*vh)
		hpass(sc.planes[c], sc.tmp, vh, cw, &sc.ax)
		out[c] = sc.planes[c]
	}
	ow := g.ow
	if vw != g.ow || vh != g.oh {
		clear(rgb)
	}
	for y := range vh {
		drow := rgb[(y0+y)*ow*3 : (y0+y+1)*ow*3]
		d := drow[x0*3 : (x0+vw)*3]
		if g.flip {
			d = drow[(ow-x0-vw)*3 : (ow-x0)*3]
		}
		switch f.model {
		case modelGray:
			p0 := out[0][y*vw : (y+1)*vw]
			for x, v := range p0 {
				q := d[x*3 : x*3+3 : x*3+3]
				q[0], q[1], q[2] = v, v, v
			}
		case modelRGB:
			p0, p1, p2 := out[0][y*vw:(y+1)*vw], out[1][y*vw:(y+1)*vw], out[2][y*vw:(y+1)*vw]
			p1, p2 = p1[:len(p0)], p2[:len(p0)]
			for x := range p0 {
				q := d[x*3 : x*3+3 : x*3+3]
				q[0], q[1], q[2] = p0[x], p1[x], p2[x]
			}
		case modelYCbCr:
			py, pcb, pcr := out[0][y*vw:(y+1)*vw], out[1][y*vw:(y+1)*vw], out[2][y*vw:(y+1)*vw]
			if useSIMD && vw >= 16 {
				simd.YCbCrRow(d, py, pcb, pcr)
			} else {
				yccRow(d, py, pcb, pcr)
			}
		case modelYCbCrVP8:
			vp8Row(d, out[0][y*vw:(y+1)*vw], out[1][y*vw:(y+1)*vw], out[2][y*vw:(y+1)*vw])
		}
	}
}

// Tables of the YCbCr to RGB conversion, filled once (constant tables).
var (
	tabCrR [256]int32
	tabCbB [256]int32
	tabG   [256]int32 // Cb part of G; the Cr part is tabCrG
	tabCrG [256]int32
	// tabClamp[v+clampOff] is v clamped to [0,255], for v in [-512,512).
	tabClamp [1024]uint8
)

const clampOff = 512

func init() {
	for i := range 256 {
		c := int32(i) - 128
		tabCrR[i] = 91881 * c
		tabCbB[i] = 116130 * c
		tabG[i] = -22554 * c
		tabCrG[i] = -46802 * c
	}
	for i := range tabClamp {
		tabClamp[i] = uint8(min(max(i-clampOff, 0), 255))
	}
}

// yccRow converts one row of planes to interleaved RGB with the integer
// arithmetic of image/color's YCbCrToRGB; clamping goes through
// a table instead of branches. simd.YCbCrRow gives the same bytes.
func yccRow(d, py, pcb, pcr []byte) {
	pcb, pcr = pcb[:len(py)], pcr[:len(py)]
	d = d[:3*len(py)]
	for x, yv := range py {
		yy := int32(yv) * 0x10101
		cb, cr := pcb[x], pcr[x]
		r := (yy + tabCrR[cr]) >> 16
		g := (yy + tabG[cb] + tabCrG[cr]) >> 16
		b := (yy + tabCbB[cb]) >> 16
		q := d[x*3 : x*3+3 : x*3+3]
		q[0], q[1], q[2] = tabClamp[(r+clampOff)&1023], tabClamp[(g+clampOff)&1023], tabClamp[(b+clampOff)&1023]
	}
}

// Tables of the limited-range BT.601 conversion of VP8 (lossy WebP), 16-bit
// fixed point, rounding included: R = 255/219·(Y-16) + 1.402·255/224·(V-128),
// and so on (the factors of libwebp's conversion, which Pillow's pixels
// come from).
var (
	tabVY  [256]int32
	tabVRV [256]int32
	tabVGU [256]int32
	tabVGV [256]int32
	tabVBU [256]int32
)

func init() {
	for i := range 256 {
		c := float64(i - 128)
		tabVY[i] = int32(math.Round(float64(i-16)*255/219*65536)) + 1<<15
		tabVRV[i] = int32(math.Round(c * 1.402 * 255 / 224 * 65536))
		tabVGU[i] = int32(math.Round(-c * 1.772 * 0.114 / 0.587 * 255 / 224 * 65536))
		tabVGV[i] = int32(math.Round(-c * 1.402 * 0.299 / 0.587 * 255 / 224 * 65536))
		tabVBU[i] = int32(math.Round(c * 1.772 * 255 / 224 * 65536))
	}
}

// vp8Row converts one row of limited-range planes to interleaved RGB.
func vp8Row(d, py, pcb, pcr []byte) {
	pcb, pcr = pcb[:len(py)], pcr[:len(py)]
	d = d[:3*len(py)]
	for x, yv := range py {
		yy := tabVY[yv]
		cb, cr := pcb[x], pcr[x]
		q := d[x*3 : x*3+3 : x*3+3]
		q[0] = clamp8((yy + tabVRV[cr]) >> 16)
		q[1] = clamp8((yy + tabVGU[cb] + tabVGV[cr]) >> 16)
		q[2] = clamp8((yy + tabVBU[cb]) >> 16)
	}
}

func clamp8(v int32) uint8 { // v may be any int32
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

func clamp64(v int64) uint8 {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// gray is ITU-R 601 luma, as torchvision's rgb_to_grayscale (16-bit fixed point).
func gray(r, g, b uint8) int32 {
	return (19595*int32(r) + 38470*int32(g) + 7471*int32(b) + 1<<15) >> 16
}

// applyJitter runs the colour ops on rgb in their drawn order, blending
// with fixed-point factors (deterministic on every architecture).
func applyJitter(rgb []byte, steps []jitterStep) {
	for _, st := range steps {
		f := int64(st.f)
		switch st.kind {
		case jBrightness: // blend with black
			var lut [256]uint8
			for v := range lut {
				lut[v] = clamp8(int32((int64(v)*f + 1<<15) >> 16))
			}
			for i, v := range rgb {
				rgb[i] = lut[v]
			}
		case jContrast: // blend with the mean gray level
			var sum int64
			for i := 0; i+2 < len(rgb); i += 3 {
				sum += int64(gray(rgb[i], rgb[i+1], rgb[i+2]))
			}
			n := int64(len(rgb) / 3)
			mean := (sum<<16 + n/2) / n // 16-bit fixed point
			off := (1<<16 - f) * mean   // 32-bit fixed point
			var lut [256]uint8
			for v := range lut {
				lut[v] = clamp8(int32((int64(v)*f<<16 + off + 1<<31) >> 32))
			}
			for i, v := range rgb {
				rgb[i] = lut[v]
			}
		case jSaturation: // blend with each pixel's gray level
			if f < 1<<20 { // factor < 16: the sums fit in int32
				f32, g32 := int32(f), int32(1<<16-f)
				for i := 0; i+2 < len(rgb); i += 3 {
					p := rgb[i : i+3 : i+3]
					gv := gray(p[0], p[1], p[2]) * g32
					p[0] = uint8(min(max((int32(p[0])*f32+gv+1<<15)>>16, 0), 255))
					p[1] = uint8(min(max((int32(p[1])*f32+gv+1<<15)>>16, 0), 255))
					p[2] = uint8(min(max((int32(p[2])*f32+gv+1<<15)>>16, 0), 255))
				}
				continue
			}
			for i := 0; i+2 < len(rgb); i += 3 {
				gv := int64(gray(rgb[i], rgb[i+1], rgb[i+2]))
				for k := range 3 {
					rgb[i+k] = clamp64((int64(rgb[i+k])*f + gv*(1<<16-f) + 1<<15) >> 16)
				}
			}
		}
	}
}

// normalize writes (v/255-mean)/std as a float32 3×H×W tensor into dst
// (little-endian bytes).
func normalize(dst, rgb []byte, h, w int, o *op, backing []float32) {
	data := backing[:3*h*w]
	n := h * w
	for c := range 3 {
		scale := float32(1 / (255 * o.std[c]))
		shift := float32(-o.mean[c] / o.std[c])
		plane := data[c*n : (c+1)*n]
		for i := range plane {
			plane[i] = float32(float32(rgb[3*i+c])*scale) + shift
		}
	}
	dst = dst[:4*len(data)]
	for i, v := range data {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

// Apply decodes src (file bytes) and writes the augmented sample into dst
// (len RowBytes), drawing from rng (nil is allowed only for pipelines
// without random ops). A bad image gives an error wrapping ErrDecode; dst
// is then unspecified. Apply is safe for concurrent use.
func (p *Pipeline) Apply(dst, src []byte, rng *rand.Rand) error {
	return p.ApplyMulti([][]byte{dst}, src, []*rand.Rand{rng})
}

// ApplyMulti decodes src once and writes len(dsts) augmentations: dsts[k]
// is what Apply(dsts[k], src, rngs[k]) gives.
func (p *Pipeline) ApplyMulti(dsts [][]byte, src []byte, rngs []*rand.Rand) error {
	return p.applyMulti(dsts, src, rngs, false)
}

// ApplyMultiChecked is ApplyMulti, and also decodes the whole file as Check
// does (with the pipeline's decoder and limits), so that a nil error means
// the file is decodable: for a file's first use, it saves decoding it twice.
// The outputs are the bytes ApplyMulti gives.
func (p *Pipeline) ApplyMultiChecked(dsts [][]byte, src []byte, rngs []*rand.Rand) error {
	return p.applyMulti(dsts, src, rngs, true)
}

func (p *Pipeline) applyMulti(dsts [][]byte, src []byte, rngs []*rand.Rand, full bool) error {
	if len(dsts) != len(rngs) {
		return fmt.Errorf("augment: %d outputs but %d generators", len(dsts), len(rngs))
	}
	for k, d := range dsts {
		if len(d) != p.RowBytes() {
			return fmt.Errorf("augment: output %d has %d bytes, want %d", k, len(d), p.RowBytes())
		}
		if rngs[k] == nil && p.random {
			return fmt.Errorf("augment: output %d: random pipeline needs a generator", k)
		}
	}
	if len(dsts) == 0 && !full {
		return nil
	}
	o, err := openImage(src, p.useC, p.lim)
	if err != nil {
		return err
	}
	defer o.close()
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	sc.noSIMD = p.noSIMD
	if cap(sc.s) < len(dsts) {
		sc.s = make([]sample, len(dsts))
	}
	ss := sc.s[:len(dsts)]
	w, h := o.size()
	var rows []int
	if o.partial() && !p.fullDecode && !full {
		rows = make([]int, 3)
	}
	for k := range ss {
		p.plan(&ss[k], w, h, rngs[k])
		if rows != nil {
			rowsNeeded(&o.lay, &ss[k], rows)
		}
	}
	f, err := o.read(rows, full)
	if err != nil {
		return err
	}
	for k, dst := range dsts {
		s := &ss[k]
		rgb := dst
		if s.norm != nil {
			sc.rgb = growBytes(sc.rgb, p.outH*p.outW*3)
			rgb = sc.rgb
		}
		render(rgb, f, s, sc)
		applyJitter(rgb, s.jitter)
		if s.norm != nil {
			if cap(sc.f32) < p.outH*p.outW*3 {
				sc.f32 = make([]float32, p.outH*p.outW*3)
			}
			normalize(dst, rgb, p.outH, p.outW, s.norm, sc.f32)
		}
	}
	return nil
}
