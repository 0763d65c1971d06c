package augment

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// BMP decoding reads what Pillow's BmpImagePlugin (9.4) reads, which
// x/image/bmp does not: OS/2 1.x (12-byte) and 2.x (64-byte) headers, 16-bit
// pixels, bitfield masks, RLE4 and RLE8, and pixel data that does not follow
// the palette directly. Pillow's conversions are kept: 5- and 6-bit
// channels scale as floor(v·255/max); alpha is dropped; pixels an RLE
// bitmap skips (delta, end of line, end of bitmap) take palette index 0; an
// index past the palette's end is the gray level of its value. Pillow
// accepts only some bitfield layouts; any mask of contiguous bits is read
// here. Where Pillow 9.4 misreads a valid file, the format is followed
// instead: after an RLE delta (Pillow reads two bytes too many), in an
// odd-length RLE4 absolute run (Pillow reads a byte too few), and for an RLE
// bitmap that ends early (Pillow refuses it).

func bmpError(format string, a ...any) error {
	return fmt.Errorf("%w: bmp: %s", ErrDecode, fmt.Sprintf(format, a...))
}

// bmpInfo is a BMP file's headers.
type bmpInfo struct {
	w, h        int
	topDown     bool
	bpp         int
	compression uint32
	masks       [3]uint32 // R, G, B: bitfields, or the defaults of 16/24/32 bits
	palette     []byte    // BGR(X) entries, palStep bytes each
	palStep     int
	data        []byte // from the pixel offset to the end of the file
}

const (
	bmpRGB       = 0
	bmpRLE8      = 1
	bmpRLE4      = 2
	bmpBitfields = 3
)

func parseBMP(b []byte) (*bmpInfo, error) {
	if len(b) < 18 || string(b[:2]) != "BM" {
		return nil, bmpError("not a BMP file")
	}
	le := binary.LittleEndian
	off := int64(le.Uint32(b[10:]))
	hs := int(le.Uint32(b[14:]))
	in := &bmpInfo{}
	var colors int64
	switch hs {
	case 12: // OS/2 1.x
		if len(b) < 26 {
			return nil, bmpError("truncated header")
		}
		in.w, in.h = int(le.Uint16(b[18:])), int(le.Uint16(b[20:]))
		in.bpp = int(le.Uint16(b[24:]))
		in.palStep = 3
	case 40, 64, 108, 124: // Windows 3.x, OS/2 2.x, v4, v5
		if len(b) < 14+hs {
			return nil, bmpError("truncated header")
		}
		w, h := int32(le.Uint32(b[18:])), int32(le.Uint32(b[22:]))
		if h < 0 {
			in.topDown, h = true, -h
		}
		if w <= 0 || h <= 0 {
			return nil, bmpError("empty image %dx%d", w, h)
		}
		in.w, in.h = int(w), int(h)
		in.bpp = int(le.Uint16(b[28:]))
		in.compression = le.Uint32(b[30:])
		colors = int64(le.Uint32(b[46:]))
		in.palStep = 4
	default:
		return nil, bmpError("unsupported header size %d", hs)
	}
	if in.w <= 0 || in.h <= 0 {
		return nil, bmpError("empty image %dx%d", in.w, in.h)
	}
	pal := 14 + hs // the palette (or, for a 40-byte header, the masks) follows the header
	switch in.compression {
	case bmpRGB:
		switch in.bpp {
		case 16:
			in.masks = [3]uint32{0x7C00, 0x3E0, 0x1F}
		case 24, 32:
			in.masks = [3]uint32{0xFF0000, 0xFF00, 0xFF}
		case 1, 2, 4, 8:
		default:
			return nil, bmpError("unsupported depth of %d bits", in.bpp)
		}
	case bmpRLE8, bmpRLE4:
		if want := map[uint32]int{bmpRLE8: 8, bmpRLE4: 4}[in.compression]; in.bpp != want {
			return nil, bmpError("RLE%d with %d bits a pixel", want, in.bpp)
		}
	case bmpBitfields:
		if in.bpp != 16 && in.bpp != 24 && in.bpp != 32 {
			return nil, bmpError("bitfields with %d bits a pixel", in.bpp)
		}
		m := 14 + 40
		if hs == 40 {
			pal += 12
		}
		if len(b) < m+12 {
			return nil, bmpError("truncated bitfield masks")
		}
		for k := range 3 {
			in.masks[k] = le.Uint32(b[m+4*k:])
			if v := in.masks[k]; v == 0 || bits.OnesCount32(v>>bits.TrailingZeros32(v)) != 32-bits.LeadingZeros32(v>>bits.TrailingZeros32(v)) {
				return nil, bmpError("bitfield mask %#x is not contiguous bits", v)
			}
		}
	default:
		return nil, bmpError("unsupported compression %d", in.compression)
	}
	if in.bpp <= 8 {
		if colors == 0 {
			colors = 1 << in.bpp
		}
		if colors > 1<<16 {
			return nil, bmpError("palette of %d colours", colors)
		}
		n := int(min(colors, 256)) * in.palStep
		if pal+n > len(b) {
			return nil, bmpError("truncated palette")
		}
		in.palette = b[pal : pal+n]
		if off == int64(14+hs) { // a pixel offset at the palette: after it, as Pillow reads it
			off += 4 * colors
		}
	}
	if off == 0 {
		off = int64(pal + len(in.palette))
	}
	if off > int64(len(b)) {
		return nil, bmpError("pixel data offset %d past the end of the file", off)
	}
	in.data = b[off:]
	return in, nil
}

// bmpSize returns the size of a BMP image.
func bmpSize(b []byte) (w, h int, err error) {
	in, err := parseBMP(b)
	if err != nil {
		return 0, 0, err
	}
	return in.w, in.h, nil
}

// decodeBMP decodes a BMP file, after checking its size against lim.
func decodeBMP(b []byte, lim Limits) (*frame, error) {
	in, err := parseBMP(b)
	if err != nil {
		return nil, err
	}
	if err := checkPixels(in.w, in.h, lim); err != nil {
		return nil, err
	}
	w, h := in.w, in.h
	f := newRGBFrame(w, h)
	pr, pg, pb := f.p[0].pix, f.p[1].pix, f.p[2].pix
	// row returns the output offset of stored row y (bottom-up unless topDown).
	row := func(y int) int {
		if in.topDown {
			return y * w
		}
		return (h - 1 - y) * w
	}
	if in.bpp <= 8 {
		var lut [256][3]byte
		for v := range lut {
			lut[v] = [3]byte{byte(v), byte(v), byte(v)}
			if e := v * in.palStep; e+3 <= len(in.palette) {
				lut[v] = [3]byte{in.palette[e+2], in.palette[e+1], in.palette[e]}
			}
		}
		idx, err := bmpIndices(in)
		if err != nil {
			return nil, err
		}
		for y := range h {
			o, src := row(y), idx[y*w:(y+1)*w]
			for x, v := range src {
				c := &lut[v]
				pr[o+x], pg[o+x], pb[o+x] = c[0], c[1], c[2]
			}
		}
		return f, nil
	}
	stride := (w*in.bpp + 31) / 32 * 4
	if int64(stride)*int64(h-1)+int64((w*in.bpp+7)/8) > int64(len(in.data)) {
		return nil, bmpError("truncated pixel data")
	}
	var shift, scale [3]uint32
	for k, m := range in.masks {
		shift[k] = uint32(bits.TrailingZeros32(m))
		scale[k] = m >> shift[k] // the channel's maximum
	}
	bpp := in.bpp / 8
	for y := range h {
		src, o := in.data[y*stride:], row(y)
		for x := range w {
			var v uint32
			switch bpp {
			case 2:
				v = uint32(binary.LittleEndian.Uint16(src[2*x:]))
			case 3:
				v = uint32(src[3*x]) | uint32(src[3*x+1])<<8 | uint32(src[3*x+2])<<16
			case 4:
				v = binary.LittleEndian.Uint32(src[4*x:])
			}
			var c [3]byte
			for k := range 3 {
				ch := (v & in.masks[k]) >> shift[k]
				if scale[k] == 255 {
					c[k] = byte(ch)
				} else {
					c[k] = byte(uint64(ch) * 255 / uint64(scale[k]))
				}
			}
			pr[o+x], pg[o+x], pb[o+x] = c[0], c[1], c[2]
		}
	}
	return f, nil
}

// bmpIndices returns the palette index of every pixel, in stored row order.
func bmpIndices(in *bmpInfo) ([]byte, error) {
	w, h := in.w, in.h
	idx := make([]byte, w*h)
	if in.compression == bmpRLE8 || in.compression == bmpRLE4 {
		return idx, bmpRLE(in, idx)
	}
	stride := (w*in.bpp + 31) / 32 * 4
	need := int64(stride)*int64(h-1) + int64((w*in.bpp+7)/8)
	if need > int64(len(in.data)) {
		return nil, bmpError("truncated pixel data")
	}
	per := 8 / in.bpp
	mask := byte(1<<in.bpp - 1)
	for y := range h {
		src, dst := in.data[y*stride:], idx[y*w:(y+1)*w]
		for x := range dst {
			sh := uint(in.bpp * (per - 1 - x%per))
			dst[x] = src[x/per] >> sh & mask
		}
	}
	return idx, nil
}

// bmpRLE decodes RLE8 or RLE4 data into idx (stored row order; pixels it
// skips stay index 0).
func bmpRLE(in *bmpInfo, idx []byte) error {
	w := in.w
	d := in.data
	rle4 := in.compression == bmpRLE4
	pos, i := 0, 0 // pos: next pixel (stored order); i: next byte of d
	for pos < len(idx) {
		if i+2 > len(d) {
			return bmpError("RLE data ends before the end of the bitmap")
		}
		n, v := int(d[i]), d[i+1]
		i += 2
		x := pos % w
		switch {
		case n > 0: // encoded run, clipped to the row
			n = min(n, w-x)
			for k := range n {
				c := v
				if rle4 {
					c = v >> 4
					if k%2 == 1 {
						c = v & 15
					}
				}
				idx[pos+k] = c
			}
			pos += n
		case v == 0: // end of line
			if x != 0 {
				pos += w - x
			}
		case v == 1: // end of bitmap
			return nil
		case v == 2: // delta
			if i+2 > len(d) {
				return bmpError("truncated RLE delta")
			}
			pos += int(d[i]) + int(d[i+1])*w
			i += 2
		default: // absolute run of v pixels, padded to a 16-bit word
			m := int(v)
			nb := m
			if rle4 {
				nb = (m + 1) / 2
			}
			if i+nb > len(d) {
				return bmpError("truncated RLE absolute run")
			}
			for k := range min(m, w-x) {
				if !rle4 {
					idx[pos+k] = d[i+k]
				} else if k%2 == 0 {
					idx[pos+k] = d[i+k/2] >> 4
				} else {
					idx[pos+k] = d[i+k/2] & 15
				}
			}
			pos += min(m, w-x)
			i += nb + nb%2
		}
	}
	return nil
}
