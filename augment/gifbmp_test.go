package augment

import (
	"bytes"
	"compress/lzw"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// bmpFile assembles a BMP: a 40-byte header, a palette of BGRX entries and
// the pixel data as given (height < 0: top-down).
func bmpFile(w, h, bpp int, compression uint32, palette [][3]byte, data []byte) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	off := 14 + 40 + 4*len(palette)
	b.WriteString("BM")
	for _, v := range []uint32{uint32(off + len(data)), 0, uint32(off), 40, uint32(w), uint32(int32(h))} {
		b.Write(le.AppendUint32(nil, v))
	}
	b.Write(le.AppendUint16(le.AppendUint16(nil, 1), uint16(bpp)))
	for _, v := range []uint32{compression, uint32(len(data)), 0, 0, uint32(len(palette)), 0} {
		b.Write(le.AppendUint32(nil, v))
	}
	for _, c := range palette {
		b.Write([]byte{c[2], c[1], c[0], 0})
	}
	b.Write(data)
	return b.Bytes()
}

// indexImage decodes src and maps each pixel back to its palette index.
func indexImage(t *testing.T, src []byte, palette [][3]byte) [][]int {
	t.Helper()
	img, err := decodeWith(src, false)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]int
	for y := range img.Bounds().Dy() {
		var row []int
		for x := range img.Bounds().Dx() {
			c := img.NRGBAAt(x, y)
			k := slices.Index(palette, [3]byte{c.R, c.G, c.B})
			row = append(row, k)
		}
		out = append(out, row)
	}
	return out
}

// TestBMPRLE checks what the Pillow corpus cannot (Pillow 9.4 misreads
// these): RLE deltas, odd-length RLE4 absolute runs and a bitmap that ends
// early, against the format. Skipped pixels are index 0.
func TestBMPRLE(t *testing.T) {
	pal := [][3]byte{{9, 9, 9}, {200, 0, 0}, {0, 200, 0}, {0, 0, 200}, {50, 60, 70}, {1, 2, 3}}
	tests := []struct {
		name        string
		w, h, bpp   int
		compression uint32
		data        []byte
		want        [][]int // top row first
	}{
		{
			name: "rle8 delta and end of line", w: 5, h: 3, bpp: 8, compression: bmpRLE8,
			data: []byte{
				2, 1, 0, 2, 1, 1, // bottom row: 1 1, then a delta: right 1, up 1
				3, 2, 0, 0, // middle row from x=3: 2 2 (the run is clipped); end of line at x=0: nothing
				0, 3, 4, 5, 4, 0, // top row: absolute 4 5 4 (padded)
				0, 0, 0, 1,
			},
			want: [][]int{{4, 5, 4, 0, 0}, {0, 0, 0, 2, 2}, {1, 1, 0, 0, 0}},
		},
		{
			name: "rle8 ends early", w: 3, h: 2, bpp: 8, compression: bmpRLE8,
			data: []byte{3, 2, 0, 1},
			want: [][]int{{0, 0, 0}, {2, 2, 2}},
		},
		{
			name: "rle4 odd absolute run", w: 5, h: 2, bpp: 4, compression: bmpRLE4,
			data: []byte{
				0, 5, 0x12, 0x34, 0x50, 0, // bottom: absolute 1 2 3 4 5 (3 bytes, padded)
				5, 0x21, // top: 2 1 2 1 2
				0, 1,
			},
			want: [][]int{{2, 1, 2, 1, 2}, {1, 2, 3, 4, 5}},
		},
		{
			name: "runs clipped to the row", w: 3, h: 2, bpp: 8, compression: bmpRLE8,
			data: []byte{9, 1, 0, 0, 0, 4, 3, 3, 3, 3, 0, 1},
			want: [][]int{{3, 3, 3}, {1, 1, 1}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := indexImage(t, bmpFile(tc.w, tc.h, tc.bpp, tc.compression, pal, tc.data), pal)
			if !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("indices %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBMPBad(t *testing.T) {
	pal := [][3]byte{{1, 2, 3}, {4, 5, 6}}
	ok := bmpFile(4, 2, 8, bmpRGB, pal, make([]byte, 8))
	if _, err := decodeWith(ok, false); err != nil {
		t.Fatal(err)
	}
	hdr := func(off int, v uint32) []byte {
		b := bytes.Clone(ok)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	tests := []struct {
		name, want string
		src        []byte
	}{
		{"truncated pixels", "truncated pixel data", ok[:len(ok)-2]},
		{"header size 20", "unsupported header size", hdr(14, 20)},
		{"zero width", "empty image", hdr(18, 0)},
		{"JPEG compression", "unsupported compression", hdr(30, 4)},
		{"RLE8 with 4 bits", "RLE8 with 4 bits", func() []byte { b := hdr(30, bmpRLE8); b[28] = 4; return b }()},
		{"depth 7", "unsupported depth", func() []byte { b := bytes.Clone(ok); b[28] = 7; return b }()},
		{"offset past the end", "past the end", hdr(10, 1<<20)},
		{"rle without end", "ends before the end", bmpFile(4, 2, 8, bmpRLE8, pal, []byte{4, 1})},
		{"truncated palette", "truncated palette", ok[:14+40+3]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeWith(tc.src, false)
			if !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrDecode with %q", err, tc.want)
			}
			if err := Check(tc.src, Limits{}); !errors.Is(err, ErrDecode) {
				t.Errorf("Check = %v", err)
			}
		})
	}
	// A mask that is not contiguous bits.
	b := bmpFile(1, 1, 32, bmpBitfields, nil, append([]byte{0x0F, 0x0F, 0, 0, 0xFF, 0, 0, 0, 0, 0xFF, 0, 0}, 1, 2, 3, 4))
	if _, err := decodeWith(b, false); !errors.Is(err, ErrDecode) {
		t.Errorf("non-contiguous mask: %v", err)
	}
}

// gifFile assembles a one-frame GIF with a global table of 4 colours.
func gifFile(w, h, litWidth int, lzwData []byte) []byte {
	var b bytes.Buffer
	b.WriteString("GIF89a")
	b.Write([]byte{byte(w), 0, byte(h), 0, 0x81, 0, 0})
	b.Write([]byte{10, 20, 30, 200, 0, 0, 0, 200, 0, 0, 0, 200})
	b.Write([]byte{0x2C, 0, 0, 0, 0, byte(w), 0, byte(h), 0, 0, byte(litWidth)})
	for len(lzwData) > 0 {
		n := min(len(lzwData), 255)
		b.WriteByte(byte(n))
		b.Write(lzwData[:n])
		lzwData = lzwData[n:]
	}
	b.Write([]byte{0, 0x3B})
	return b.Bytes()
}

// lzwCodes packs GIF LZW codes of the given widths, LSB first.
func lzwCodes(codes ...[2]int) []byte {
	var out []byte
	acc, n := 0, 0
	for _, c := range codes {
		acc |= c[0] << n
		n += c[1]
		for n >= 8 {
			out = append(out, byte(acc))
			acc >>= 8
			n -= 8
		}
	}
	if n > 0 {
		out = append(out, byte(acc))
	}
	return out
}

func TestGIFBad(t *testing.T) {
	// litWidth 2: clear 4, end 5, codes 3 bits wide.
	// The third code defines entry 7; the table then holds 8 codes and
	// codes grow to 4 bits.
	good := lzwCodes([2]int{4, 3}, [2]int{1, 3}, [2]int{2, 3}, [2]int{1, 3}, [2]int{2, 4}, [2]int{5, 4})
	if _, err := decodeWith(gifFile(2, 2, 2, good), false); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, want string
		src        []byte
	}{
		{"ends early", "ends after 1 of 2 rows", gifFile(2, 2, 2, lzwCodes([2]int{4, 3}, [2]int{1, 3}, [2]int{2, 3}, [2]int{5, 3}))},
		{"no end code", "without an end code", gifFile(2, 2, 2, lzwCodes([2]int{4, 3}, [2]int{1, 3}))},
		{"code not yet defined", "invalid LZW code 7", gifFile(2, 2, 2, lzwCodes([2]int{4, 3}, [2]int{1, 3}, [2]int{7, 3}))},
		{"first code a string", "invalid LZW code 6", gifFile(2, 2, 2, lzwCodes([2]int{4, 3}, [2]int{6, 3}))},
		{"code size 0", "minimum code size 0", gifFile(2, 2, 0, good)},
		{"code size 12", "minimum code size 12", gifFile(2, 2, 12, good)},
		{"no image", "no image", []byte("GIF89a\x02\x00\x02\x00\x00\x00\x00\x3B")},
		{"GIF88a", "not a GIF87a", []byte("GIF88a\x02\x00\x02\x00\x00\x00\x00\x3B")},
		{"truncated", "truncated", gifFile(2, 2, 2, good)[:20]},
		{"empty frame", "empty first frame", gifFile(0, 2, 2, good)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeWith(tc.src, false)
			if !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrDecode with %q", err, tc.want)
			}
		})
	}
}

// TestLZWDecode decodes what compress/lzw writes (the encoder image/gif
// uses: real dictionary strings, the KwKwK case, clear codes when the table
// fills) for every literal width it takes.
func TestLZWDecode(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 5))
	for lw := 2; lw <= 8; lw++ {
		src := make([]byte, 30000)
		for i := range src {
			if i > 0 && r.IntN(3) > 0 {
				src[i] = src[i-1-r.IntN(min(i, 4))] // repeats, for long strings
			} else {
				src[i] = byte(r.IntN(1 << lw))
			}
		}
		var enc bytes.Buffer
		w := lzw.NewWriter(&enc, lzw.LSB, lw)
		w.Write(src)
		w.Close()
		var blocks []byte
		for d := enc.Bytes(); len(d) > 0; {
			n := min(len(d), 255)
			blocks = append(append(blocks, byte(n)), d[:n]...)
			d = d[n:]
		}
		blocks = append(blocks, 0)
		var got []byte
		err := lzwDecode(blocks, lw, func(run []byte) bool { got = append(got, run...); return true })
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("litWidth %d: %d of %d bytes, err %v", lw, len(got), len(src), err)
		}
	}
}

// TestGIFAgainstImageGIF compares, for files image/gif reads, every pixel
// with image/gif's (transparency left out: image/gif blackens it).
func TestGIFAgainstImageGIF(t *testing.T) {
	base := natural(33, 21, 6)
	pal := image.NewPaletted(base.Bounds(), nil)
	for i := range 256 {
		pal.Palette = append(pal.Palette, color.RGBA{uint8(i * 7), uint8(255 - i), uint8(i * 3), 255})
	}
	for i := range pal.Pix {
		pal.Pix[i] = base.Pix[4*i] ^ base.Pix[4*i+2]
	}
	src := encodeGIF(t, pal)
	got := decodeFull(t, src, false)
	for y := range 21 {
		for x := range 33 {
			c := pal.Palette[pal.ColorIndexAt(x, y)].(color.RGBA)
			if g := got.NRGBAAt(x, y); g.R != c.R || g.G != c.G || g.B != c.B {
				t.Fatalf("(%d,%d) = %v, want %v", x, y, g, c)
			}
		}
	}
}

func encodeGIF(t *testing.T, img *image.Paletted) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := gif.Encode(&b, img, &gif.Options{NumColors: 256}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
