package augment

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"

	"golang.org/x/image/webp"
)

// WebP decoding gives what Pillow's WebPImagePlugin gives: libwebp's
// WebPAnimDecoder output for the first frame, non-premultiplied RGBA on a
// canvas of the file's size, alpha dropped. With libwebp built in
// (libwebp.go) that is what runs. The pure-Go path (x/image/webp) needs
// three corrections to match it: lossy (VP8) samples are limited-range
// BT.601 YCbCr, not JPEG's full range (image/color's conversion turned
// black into 16 and white into 235); transparent pixels keep their colour
// (image.NYCbCrA's RGBA is premultiplied, so they came out black); and an
// animated file's first frame, which x/image/webp does not read, is taken
// from its ANMF chunk and placed at its offset on a zero canvas.

func webpError(format string, a ...any) error {
	return fmt.Errorf("%w: webp: %s", ErrDecode, fmt.Sprintf(format, a...))
}

// webpStill returns the first frame of an animated WebP as a still WebP
// file, with its offset on the canvas and the size its ANMF chunk gives;
// anim is false for a still file.
func webpStill(src []byte) (still []byte, x, y, fw, fh int, anim bool, err error) {
	if len(src) < 12 || string(src[:4]) != "RIFF" || string(src[8:12]) != "WEBP" {
		return nil, 0, 0, 0, 0, false, webpError("not a RIFF WEBP file")
	}
	end := 8 + int64(binary.LittleEndian.Uint32(src[4:]))
	if end > int64(len(src)) { // libwebp's demuxer, and so Pillow, refuse it too
		return nil, 0, 0, 0, 0, false, webpError("truncated: the RIFF header says %d bytes, the file has %d", end, len(src))
	}
	for i := 12; int64(i)+8 <= end; {
		fcc, n := string(src[i:i+4]), int(binary.LittleEndian.Uint32(src[i+4:]))
		if n < 0 || int64(i)+8+int64(n) > end {
			return nil, 0, 0, 0, 0, false, webpError("truncated %q chunk", fcc)
		}
		data := src[i+8 : i+8+n]
		switch fcc {
		case "VP8X":
			if len(data) < 10 || data[0]&0x02 == 0 {
				return nil, 0, 0, 0, 0, false, nil // still
			}
		case "VP8 ", "VP8L":
			return nil, 0, 0, 0, 0, false, nil
		case "ANMF":
			if len(data) < 16 {
				return nil, 0, 0, 0, 0, false, webpError("truncated ANMF chunk")
			}
			u24 := func(b []byte) int { return int(b[0]) | int(b[1])<<8 | int(b[2])<<16 }
			x, y = 2*u24(data[0:]), 2*u24(data[3:])
			fw, fh = u24(data[6:])+1, u24(data[9:])+1
			var alph, bits []byte
			for j := 16; j+8 <= len(data); {
				sub, m := string(data[j:j+4]), int(binary.LittleEndian.Uint32(data[j+4:]))
				if m < 0 || j+8+m > len(data) {
					return nil, 0, 0, 0, 0, false, webpError("truncated %q chunk in ANMF", sub)
				}
				switch sub {
				case "ALPH":
					alph = data[j : j+8+m]
				case "VP8 ", "VP8L":
					bits = data[j : j+8+m]
				}
				j += 8 + m + m&1
			}
			if bits == nil {
				return nil, 0, 0, 0, 0, false, webpError("first frame without image data")
			}
			var body bytes.Buffer
			body.WriteString("WEBP")
			if alph != nil && string(bits[:4]) == "VP8 " {
				vp8x := []byte{'V', 'P', '8', 'X', 10, 0, 0, 0, 0x10, 0, 0, 0,
					byte(fw - 1), byte((fw - 1) >> 8), byte((fw - 1) >> 16), byte(fh - 1), byte((fh - 1) >> 8), byte((fh - 1) >> 16)}
				body.Write(vp8x)
				body.Write(alph)
				if len(alph)&1 == 1 {
					body.WriteByte(0)
				}
			}
			body.Write(bits)
			if len(bits)&1 == 1 {
				body.WriteByte(0)
			}
			out := binary.LittleEndian.AppendUint32([]byte("RIFF"), uint32(body.Len()))
			return append(out, body.Bytes()...), x, y, fw, fh, true, nil
		}
		i += 8 + n + n&1
	}
	return nil, 0, 0, 0, 0, false, webpError("no image data")
}

var webpSize = libraryConfig("webp", webp.DecodeConfig)

// decodeWebPGo decodes the first frame of a WebP file with x/image/webp,
// corrected as described above, after checking its canvas against lim.
func decodeWebPGo(src []byte, lim Limits) (*frame, error) {
	w, h, err := webpSize(src)
	if err != nil {
		return nil, err
	}
	if err := checkPixels(w, h, lim); err != nil {
		return nil, err
	}
	still, x, y, fw, fh, anim, err := webpStill(src)
	if err != nil {
		return nil, err
	}
	if !anim {
		still = src
	} else if sw, sh, err := webpSize(still); err != nil {
		return nil, err
	} else if sw != fw || sh != fh { // before decoding: the bitstream may claim far more pixels
		return nil, webpError("first frame's image is %dx%d, its ANMF chunk says %dx%d", sw, sh, fw, fh)
	}
	img, err := decodeWebPLibrary(still)
	if err != nil {
		return nil, err
	}
	f := frameFromImage(img)
	if f.model == modelYCbCr {
		f.model = modelYCbCrVP8
	}
	if !anim {
		if f.w != w || f.h != h {
			return nil, webpError("size %dx%d differs from header %dx%d", f.w, f.h, w, h)
		}
		return f, nil
	}
	if x+f.w > w || y+f.h > h {
		return nil, webpError("first frame %dx%d at (%d,%d) outside the %dx%d canvas", f.w, f.h, x, y, w, h)
	}
	rgb := make([]byte, 3*f.w*f.h)
	var s sample
	s.g = geom{rw: float64(f.w), rh: float64(f.h), vw: f.w, vh: f.h, ow: f.w, oh: f.h}
	render(rgb, f, &s, new(scratch))
	canvas := newRGBFrame(w, h)
	for r := range f.h {
		o := (y+r)*w + x
		for c := range f.w {
			p := rgb[3*(r*f.w+c):]
			canvas.p[0].pix[o+c], canvas.p[1].pix[o+c], canvas.p[2].pix[o+c] = p[0], p[1], p[2]
		}
	}
	return canvas, nil
}

func decodeWebPLibrary(src []byte) (img image.Image, err error) {
	defer func() {
		if r := recover(); r != nil {
			img, err = nil, webpError("%v", r)
		}
	}()
	img, err = webp.Decode(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("%w: webp: %w", ErrDecode, err)
	}
	return img, nil
}
