package augment

import (
	"encoding/binary"
	"fmt"
)

// GIF decoding follows what Pillow's GifImagePlugin (9.4) gives for the first
// frame of a file, which image/gif cannot: image/gif refuses LZW minimum code
// sizes over 8, files without a colour table and indices past the end of the
// table, returns the first frame alone when it is smaller than the screen,
// and blackens the transparent colour.
//
// Pillow's first frame: a canvas of the logical screen's size, grown to hold
// the frame if the frame reaches past it, filled with the transparency index
// (when the frame's graphic control extension sets one) or index 0, the
// frame's indices painted at its offset; then each index becomes its colour
// in the frame's table (local, else global), and an index past the table's
// end, or any index when there is no table, the gray level of its value.
// Transparency does not change any pixel's colour. LZW data that ends
// before the frame is full makes the file undecodable, as in Pillow.

// gifFrame is the first image of a GIF file, located but not decoded.
type gifFrame struct {
	cw, ch     int    // canvas: the screen, grown to hold the frame
	x, y, w, h int    // the frame within the canvas
	interlace  bool   //
	palette    []byte // RGB triplets, nil when there is no table
	trans      int    // transparency index, -1 when none
	litWidth   int    // LZW minimum code size
	data       []byte // the frame's data sub-blocks, from the first length byte
}

func gifError(format string, a ...any) error {
	return fmt.Errorf("%w: gif: %s", ErrDecode, fmt.Sprintf(format, a...))
}

// parseGIF finds the first frame of a GIF file.
func parseGIF(b []byte) (*gifFrame, error) {
	if len(b) < 13 || (string(b[:6]) != "GIF87a" && string(b[:6]) != "GIF89a") {
		return nil, gifError("not a GIF87a or GIF89a file")
	}
	f := &gifFrame{cw: int(binary.LittleEndian.Uint16(b[6:])), ch: int(binary.LittleEndian.Uint16(b[8:])), trans: -1}
	i := 13
	if b[10]&0x80 != 0 {
		n := 3 << (b[10]&7 + 1)
		if i+n > len(b) {
			return nil, gifError("truncated global colour table")
		}
		f.palette = b[i : i+n]
		i += n
	}
	// skipBlocks returns the index after the data sub-blocks starting at j.
	skipBlocks := func(j int) (int, error) {
		for j < len(b) {
			n := int(b[j])
			if n == 0 {
				return j + 1, nil
			}
			j += 1 + n
		}
		return 0, gifError("truncated data sub-blocks")
	}
	for i < len(b) {
		switch b[i] {
		case 0x21: // extension
			if i+2 >= len(b) {
				return nil, gifError("truncated extension")
			}
			if b[i+1] == 0xF9 && i+6 < len(b) && b[i+2] >= 4 && b[i+3]&1 != 0 { // graphic control
				f.trans = int(b[i+6]) // the last one before the image counts, as in Pillow
			}
			j, err := skipBlocks(i + 2)
			if err != nil {
				return nil, err
			}
			i = j
		case 0x2C: // image descriptor
			if i+10 > len(b) {
				return nil, gifError("truncated image descriptor")
			}
			d := b[i+1 : i+10]
			f.x, f.y = int(binary.LittleEndian.Uint16(d[0:])), int(binary.LittleEndian.Uint16(d[2:]))
			f.w, f.h = int(binary.LittleEndian.Uint16(d[4:])), int(binary.LittleEndian.Uint16(d[6:]))
			f.interlace = d[8]&0x40 != 0
			i += 10
			if d[8]&0x80 != 0 {
				n := 3 << (d[8]&7 + 1)
				if i+n > len(b) {
					return nil, gifError("truncated local colour table")
				}
				f.palette = b[i : i+n]
				i += n
			}
			if i >= len(b) {
				return nil, gifError("truncated image data")
			}
			f.litWidth = int(b[i])
			f.data = b[i+1:]
			f.cw, f.ch = max(f.cw, f.x+f.w), max(f.ch, f.y+f.h)
			if f.w == 0 || f.h == 0 {
				return nil, gifError("empty first frame %dx%d", f.w, f.h)
			}
			return f, nil
		case 0x3B: // trailer
			return nil, gifError("no image")
		default:
			i++ // Pillow skips unknown bytes between blocks
		}
	}
	return nil, gifError("no image")
}

// gifSize returns the size of a GIF as decoded: the canvas of the first frame.
func gifSize(b []byte) (w, h int, err error) {
	f, err := parseGIF(b)
	if err != nil {
		return 0, 0, err
	}
	return f.cw, f.ch, nil
}

// decodeGIF decodes the first frame of a GIF file as Pillow does, after
// checking its canvas against lim.
func decodeGIF(b []byte, lim Limits) (*frame, error) {
	f, err := parseGIF(b)
	if err != nil {
		return nil, err
	}
	if err := checkPixels(f.cw, f.ch, lim); err != nil {
		return nil, err
	}
	if f.litWidth < 1 || f.litWidth > 11 {
		return nil, gifError("LZW minimum code size %d", f.litWidth)
	}
	fill := byte(0)
	if f.trans >= 0 {
		fill = byte(f.trans)
	}
	idx := make([]byte, f.cw*f.ch)
	if fill != 0 {
		for k := range idx {
			idx[k] = fill
		}
	}
	rows := gifRows(f.h, f.interlace)
	r := 0
	out := idx[(f.y+rows[0])*f.cw+f.x : (f.y+rows[0])*f.cw+f.x+f.w]
	x := 0
	err = lzwDecode(f.data, f.litWidth, func(run []byte) bool {
		for len(run) > 0 {
			n := copy(out[x:], run)
			run = run[n:]
			x += n
			if x == f.w {
				r++
				if r == f.h {
					return false
				}
				y := f.y + rows[r]
				out, x = idx[y*f.cw+f.x:y*f.cw+f.x+f.w], 0
			}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if r < f.h {
		return nil, gifError("image data ends after %d of %d rows", r, f.h)
	}
	var lut [256][3]byte
	for v := range lut {
		lut[v] = [3]byte{byte(v), byte(v), byte(v)}
		if 3*v+2 < len(f.palette) {
			copy(lut[v][:], f.palette[3*v:])
		}
	}
	fr := newRGBFrame(f.cw, f.ch)
	pr, pg, pb := fr.p[0].pix, fr.p[1].pix, fr.p[2].pix
	for k, v := range idx {
		c := &lut[v]
		pr[k], pg[k], pb[k] = c[0], c[1], c[2]
	}
	return fr, nil
}

// gifRows returns the frame row each decoded row goes to.
func gifRows(h int, interlace bool) []int {
	rows := make([]int, 0, h)
	if !interlace {
		for y := range h {
			rows = append(rows, y)
		}
		return rows
	}
	for _, p := range [4][2]int{{0, 8}, {4, 8}, {2, 4}, {1, 2}} {
		for y := p[0]; y < h; y += p[1] {
			rows = append(rows, y)
		}
	}
	return rows
}

// lzwDecode decodes GIF LZW data held in sub-blocks (length-prefixed,
// ending with a zero length), of any minimum code size 1..11 (codes of up to
// 12 bits), and hands the output to emit in runs until emit returns false
// or the end code comes. Values of literal codes above 255 keep their low
// byte. Running out of data before the end code is an error unless emit
// had enough.
func lzwDecode(data []byte, litWidth int, emit func([]byte) bool) error {
	const maxCodes = 4096
	var (
		prefix [maxCodes]uint16
		suffix [maxCodes]byte
		first  [maxCodes]byte // first byte of each code's string
		length [maxCodes]uint16
		stack  [maxCodes]byte
	)
	clear, eoi := 1<<litWidth, 1<<litWidth+1
	for c := range clear {
		suffix[c], first[c], length[c] = byte(c), byte(c), 1
	}
	width, next, prev := litWidth+1, eoi+1, -1
	var acc uint32
	nacc := 0
	pos, block := 0, 0 // pos: next byte; block: bytes left in the current sub-block
	readCode := func() (int, bool) {
		for nacc < width {
			if block == 0 {
				if pos >= len(data) || data[pos] == 0 {
					return 0, false
				}
				block = int(data[pos])
				pos++
			}
			if pos >= len(data) {
				return 0, false
			}
			acc |= uint32(data[pos]) << nacc
			nacc += 8
			pos++
			block--
		}
		c := int(acc & (1<<width - 1))
		acc >>= width
		nacc -= width
		return c, true
	}
	for {
		code, ok := readCode()
		if !ok {
			return gifError("LZW data ends without an end code")
		}
		switch {
		case code == clear:
			width, next, prev = litWidth+1, eoi+1, -1
			continue
		case code == eoi:
			return nil
		case code > next || (code == next && prev < 0) || (code >= eoi && code < next && length[code] == 0):
			return gifError("invalid LZW code %d", code)
		}
		// The string of code (or, for the code being defined, prev's
		// string and its first byte), written backwards into stack.
		c := code
		var n int
		if code == next {
			n = int(length[prev]) + 1
			stack[n-1] = first[prev]
			c = prev
		} else {
			n = int(length[code])
		}
		for k := int(length[c]) - 1; k >= 0; k-- {
			stack[k] = suffix[c]
			c = int(prefix[c])
		}
		if prev >= 0 && next < maxCodes {
			prefix[next], suffix[next], first[next] = uint16(prev), stack[0], first[prev]
			length[next] = length[prev] + 1
			next++
			if next == 1<<width && width < 12 {
				width++
			}
		}
		prev = code
		if !emit(stack[:n]) {
			return nil
		}
	}
}
