package augment

import (
	"image"
	"image/color"
)

// A plane is one channel of a decoded image at its own resolution.
type plane struct {
	pix    []byte
	stride int
	w, h   int // samples
	fx, fy int // subsampling factor relative to the full image (1, 2, 4...)
}

type colorModel uint8

const (
	modelGray     colorModel = iota
	modelYCbCr               // full range (JFIF), as JPEG stores it
	modelRGB                 //
	modelYCbCrVP8            // limited range (BT.601 studio swing), as lossy WebP stores it
)

// A frame is a decoded image as planes: one (gray) or three (YCbCr or RGB).
type frame struct {
	model colorModel
	w, h  int
	n     int
	p     [3]plane
}

// newRGBFrame allocates a frame of three full-resolution RGB planes.
func newRGBFrame(w, h int) *frame {
	f := &frame{model: modelRGB, w: w, h: h, n: 3}
	buf := make([]byte, 3*w*h)
	for i := range 3 {
		f.p[i] = plane{pix: buf[i*w*h : (i+1)*w*h], stride: w, w: w, h: h, fx: 1, fy: 1}
	}
	return f
}

// frameFromImage converts any decoded image to planes without losing
// chroma resolution where the image keeps planes already.
func frameFromImage(img image.Image) *frame {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	switch m := img.(type) {
	case *image.YCbCr:
		fx, fy := 1, 1
		switch m.SubsampleRatio {
		case image.YCbCrSubsampleRatio422:
			fx = 2
		case image.YCbCrSubsampleRatio420:
			fx, fy = 2, 2
		case image.YCbCrSubsampleRatio440:
			fy = 2
		case image.YCbCrSubsampleRatio411:
			fx = 4
		case image.YCbCrSubsampleRatio410:
			fx, fy = 4, 2
		}
		cw, ch := (w+fx-1)/fx, (h+fy-1)/fy
		if b.Min != (image.Point{}) || len(m.Cb) < (ch-1)*m.CStride+cw || len(m.Y) < (h-1)*m.YStride+w {
			break
		}
		return &frame{model: modelYCbCr, w: w, h: h, n: 3, p: [3]plane{
			{pix: m.Y, stride: m.YStride, w: w, h: h, fx: 1, fy: 1},
			{pix: m.Cb, stride: m.CStride, w: cw, h: ch, fx: fx, fy: fy},
			{pix: m.Cr, stride: m.CStride, w: cw, h: ch, fx: fx, fy: fy},
		}}
	case *image.NYCbCrA: // alpha dropped; the colour of transparent pixels kept
		return frameFromImage(&m.YCbCr)
	case *image.Gray:
		if b.Min == (image.Point{}) {
			return &frame{model: modelGray, w: w, h: h, n: 1, p: [3]plane{
				{pix: m.Pix, stride: m.Stride, w: w, h: h, fx: 1, fy: 1},
			}}
		}
	case *image.Gray16:
		f := &frame{model: modelGray, w: w, h: h, n: 1}
		f.p[0] = plane{pix: make([]byte, w*h), stride: w, w: w, h: h, fx: 1, fy: 1}
		for y := range h {
			row := m.Pix[(y)*m.Stride:]
			out := f.p[0].pix[y*w : (y+1)*w]
			for x := range out {
				out[x] = row[2*x]
			}
		}
		return f
	}
	f := newRGBFrame(w, h)
	r, g, bl := f.p[0].pix, f.p[1].pix, f.p[2].pix
	switch m := img.(type) {
	case *image.NRGBA: // alpha dropped, as PIL's convert("RGB") does
		splitPixels(r, g, bl, m.Pix, m.Stride, w, h, 4, 1)
	case *image.RGBA:
		splitPixels(r, g, bl, m.Pix, m.Stride, w, h, 4, 1)
	case *image.NRGBA64: // the high byte of each 16-bit sample
		splitPixels(r, g, bl, m.Pix, m.Stride, w, h, 8, 2)
	case *image.CMYK:
		for y := range h {
			row := m.Pix[y*m.Stride:]
			for x := range w {
				o := y*w + x
				r[o], g[o], bl[o] = cmykToRGB(row[4*x], row[4*x+1], row[4*x+2], row[4*x+3])
			}
		}
	default:
		for y := range h {
			for x := range w {
				c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				o := y*w + x
				r[o], g[o], bl[o] = c.R, c.G, c.B
			}
		}
	}
	return f
}

// fancyUpsampled reports whether libjpeg (jdsample.c, with its default
// do_fancy_upsampling) upsamples a plane subsampled by fx×fy, w samples
// wide, with its triangle filter, which the resampler's bilinear filter
// matches; otherwise libjpeg replicates samples. Pillow decodes through
// libjpeg, so its pixels follow the same choice.
func fancyUpsampled(fx, fy, w int) bool {
	switch {
	case fx == 1 && (fy == 1 || fy == 2):
		return true
	case fx == 2 && (fy == 1 || fy == 2):
		return w > 2
	}
	return false
}

// upsampleAsLibjpeg replaces each plane that libjpeg would upsample by
// replication (factors other than 1 and 2, or a 2× plane at most two
// samples wide) by its full-resolution replication, so the frame renders
// as libjpeg's (and Pillow's) upsampling does.
func (f *frame) upsampleAsLibjpeg() {
	for c := 1; c < f.n; c++ {
		s := f.p[c]
		if fancyUpsampled(s.fx, s.fy, s.w) {
			continue
		}
		d := plane{pix: make([]byte, f.w*f.h), stride: f.w, w: f.w, h: f.h, fx: 1, fy: 1}
		for y := range f.h {
			src := s.pix[(y/s.fy)*s.stride:]
			row := d.pix[y*f.w : (y+1)*f.w]
			for x := range row {
				row[x] = src[x/s.fx]
			}
		}
		f.p[c] = d
	}
}

// cmykToRGB converts inked CMYK (255 = full ink) to RGB as Pillow's
// convert("RGB") does: each channel is (255-k) less its share c·(255-k)/255,
// rounded.
func cmykToRGB(c, m, y, k uint8) (r, g, b uint8) {
	nk := 255 - int(k)
	scale := func(v uint8) uint8 {
		t := int(v)*nk + 128
		return uint8(nk - (t+t>>8)>>8)
	}
	return scale(c), scale(m), scale(y)
}

// orient applies an EXIF orientation (1..8) and returns the upright frame.
func (f *frame) orient(o int) *frame {
	if o < 2 || o > 8 {
		return f
	}
	transpose := o >= 5
	out := &frame{model: f.model, w: f.w, h: f.h, n: f.n}
	if transpose {
		out.w, out.h = f.h, f.w
	}
	for i := range f.n {
		s := f.p[i]
		d := plane{w: s.w, h: s.h, fx: s.fx, fy: s.fy}
		if transpose {
			d.w, d.h, d.fx, d.fy = s.h, s.w, s.fy, s.fx
		}
		d.stride = d.w
		d.pix = make([]byte, d.w*d.h)
		for y := range d.h {
			row := d.pix[y*d.stride : y*d.stride+d.w]
			for x := range row {
				var sx, sy int
				switch o {
				case 2:
					sx, sy = s.w-1-x, y
				case 3:
					sx, sy = s.w-1-x, s.h-1-y
				case 4:
					sx, sy = x, s.h-1-y
				case 5:
					sx, sy = y, x
				case 6:
					sx, sy = y, s.h-1-x
				case 7:
					sx, sy = s.w-1-y, s.h-1-x
				case 8:
					sx, sy = s.w-1-y, x
				}
				row[x] = s.pix[sy*s.stride+sx]
			}
		}
		out.p[i] = d
	}
	return out
}

// jpegOrientation returns the EXIF orientation (1..8) of a JPEG file, 1
// when there is none or it cannot be read.
func jpegOrientation(b []byte) int {
	_, _, o := jpegHeader(b)
	return o
}

// jpegHeader reads the markers before the first scan of a JPEG file: the
// frame size (0, 0 when there is no usable SOF marker) and the EXIF
// orientation (1 when absent).
func jpegHeader(b []byte) (w, h, orient int) {
	orient = 1
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return 0, 0, orient
	}
	i := 2
	for i+4 <= len(b) {
		if b[i] != 0xFF {
			return w, h, orient
		}
		m := b[i+1]
		if m == 0xFF { // fill byte
			i++
			continue
		}
		if m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01 {
			i += 2
			continue
		}
		if m == 0xDA || m == 0xD9 {
			return w, h, orient
		}
		n := int(b[i+2])<<8 | int(b[i+3])
		if n < 2 || i+2+n > len(b) {
			return w, h, orient
		}
		seg := b[i+4 : i+2+n]
		switch {
		case m == 0xE1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" && orient == 1:
			if o := exifOrientation(seg[6:]); o != 0 {
				orient = o
			}
		case m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC && len(seg) >= 5 && w == 0:
			h = int(seg[1])<<8 | int(seg[2])
			w = int(seg[3])<<8 | int(seg[4])
		}
		i += 2 + n
	}
	return w, h, orient
}

// exifOrientation reads tag 0x0112 of IFD0 of a TIFF structure; 0 if absent.
func exifOrientation(t []byte) int {
	if len(t) < 8 {
		return 0
	}
	var u16 func([]byte) int
	var u32 func([]byte) int
	switch string(t[:2]) {
	case "II":
		u16 = func(p []byte) int { return int(p[0]) | int(p[1])<<8 }
		u32 = func(p []byte) int { return int(uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24) }
	case "MM":
		u16 = func(p []byte) int { return int(p[1]) | int(p[0])<<8 }
		u32 = func(p []byte) int { return int(uint32(p[3]) | uint32(p[2])<<8 | uint32(p[1])<<16 | uint32(p[0])<<24) }
	default:
		return 0
	}
	off := u32(t[4:8])
	if off < 8 || off > len(t)-2 {
		return 0
	}
	n := u16(t[off:])
	for k := range n {
		e := off + 2 + 12*k
		if e+12 > len(t) {
			return 0
		}
		if u16(t[e:]) == 0x0112 && u16(t[e+2:]) == 3 {
			if v := u16(t[e+8:]); v >= 1 && v <= 8 {
				return v
			}
			return 0
		}
	}
	return 0
}

// splitPixels copies the first three channels of interleaved pixels (bpp
// bytes per pixel, channels step bytes apart) into the planes r, g, bl.
func splitPixels(r, g, bl, pix []byte, stride, w, h, bpp, step int) {
	for y := range h {
		row := pix[y*stride:]
		for x := range w {
			o, i := y*w+x, bpp*x
			r[o], g[o], bl[o] = row[i], row[i+step], row[i+2*step]
		}
	}
}
