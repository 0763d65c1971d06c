package augment

import (
	"image/color/palette"
	"image/draw"
	"image/gif"

	"golang.org/x/image/bmp"

	"bytes"
	"errors"
	"image"
	"image/color"
	"image/png"
	"testing"
)

// decoders lists the decoder sets built into this test binary: the pure-Go
// decoders (false) and, when built in, the C libraries (true: libjpeg-turbo
// for JPEG, libwebp for WebP).
func decoders() []bool {
	if libjpegAvailable || libwebpAvailable {
		return []bool{false, true}
	}
	return []bool{false}
}

func decName(c bool) string {
	if c {
		return "c"
	}
	return "go"
}

// decChoice is the PipelineOptions.Decoder of a decoder set.
func decChoice(c bool) string {
	if c {
		return "auto"
	}
	return "go"
}

func TestDecodeJPEGVariants(t *testing.T) {
	reference := func(t *testing.T, name string) *image.NRGBA {
		ref, err := png.Decode(bytes.NewReader(readTestdata(t, name)))
		if err != nil {
			t.Fatal(err)
		}
		out := image.NewNRGBA(ref.Bounds())
		for y := range ref.Bounds().Dy() {
			for x := range ref.Bounds().Dx() {
				out.Set(x, y, ref.At(x, y))
			}
		}
		return out
	}
	tests := []struct {
		name    string
		file    string
		ref     string  // reference PNG; "" means video-001.png
		maxDiff float64 // mean absolute difference to the reference
		gray    bool
		agree   float64 // max mean difference between decoders; 0 means 1.5
	}{
		{name: "baseline 4:2:0", file: "video-001.q50.420.jpeg", maxDiff: 8},
		{name: "4:1:0", file: "video-001.q50.410.jpeg", maxDiff: 8},
		{name: "4:1:1", file: "video-001.q50.411.jpeg", maxDiff: 8},
		{name: "4:2:2", file: "video-001.q50.422.jpeg", maxDiff: 6},
		{name: "4:4:0", file: "video-001.q50.440.jpeg", maxDiff: 6},
		{name: "4:4:4", file: "video-001.q50.444.jpeg", maxDiff: 6},
		{name: "progressive", file: "video-001.progressive.jpeg", maxDiff: 3},
		{name: "progressive 4:2:0", file: "video-001.q50.420.progressive.jpeg", maxDiff: 8},
		{name: "odd sampling 2x2,1x2,1x2", file: "video-001.221212.jpeg", maxDiff: 4},
		{name: "rgb, G and B subsampled (Go upsamples them itself)", file: "video-001.rgb.jpeg", ref: "video-001.rgb.png", maxDiff: 5, agree: 5},
		{name: "restart markers", file: "video-001.restart2.jpeg", maxDiff: 6},
		{name: "cmyk (adobe)", file: "video-001.cmyk.jpeg", ref: "video-001.cmyk.png", maxDiff: 4},
		{name: "gray", file: "video-005.gray.q50.jpeg", gray: true},
		{name: "gray 2x2 progressive", file: "video-005.gray.q50.2x2.progressive.jpeg", gray: true},
	}
	for _, tc := range tests {
		var byGo *image.NRGBA
		for _, lj := range decoders() {
			t.Run(tc.name+"/"+decName(lj), func(t *testing.T) {
				img := decodeFull(t, readTestdata(t, tc.file), lj)
				if !lj {
					byGo = img
				} else if d := meanAbsDiff(img, byGo); d > max(tc.agree, 1.5) {
					t.Errorf("libjpeg and Go decoders differ by %.2f levels on average", d)
				}
				if tc.gray {
					for i := 0; i < len(img.Pix); i += 4 {
						if img.Pix[i] != img.Pix[i+1] || img.Pix[i] != img.Pix[i+2] {
							t.Fatalf("gray JPEG gave a colour pixel %v", img.Pix[i:i+3])
						}
					}
					return
				}
				ref := "video-001.png"
				if tc.ref != "" {
					ref = tc.ref
				}
				refRGB := reference(t, ref)
				if img.Bounds() != refRGB.Bounds() {
					t.Fatalf("size %v, want %v", img.Bounds(), refRGB.Bounds())
				}
				if d := meanAbsDiff(img, refRGB); d > tc.maxDiff {
					t.Errorf("mean abs diff to reference %.2f > %.2f", d, tc.maxDiff)
				}
			})
		}
	}
}

func TestDecodePNGVariants(t *testing.T) {
	for name, src := range pngVariants(t) {
		t.Run(name, func(t *testing.T) {
			want, err := png.Decode(bytes.NewReader(src))
			if err != nil {
				t.Fatal(err)
			}
			got := decodeFull(t, src, false)
			b := want.Bounds()
			for y := range b.Dy() {
				for x := range b.Dx() {
					c := color.NRGBAModel.Convert(want.At(x, y)).(color.NRGBA)
					if n, ok := want.(*image.NRGBA64); ok { // 16 bits: keep the high byte
						c64 := n.NRGBA64At(x, y)
						c = color.NRGBA{uint8(c64.R >> 8), uint8(c64.G >> 8), uint8(c64.B >> 8), 255}
					}
					g := got.NRGBAAt(x, y)
					if g.R != c.R || g.G != c.G || g.B != c.B {
						t.Fatalf("pixel (%d,%d) = %v, want RGB of %v", x, y, g, c)
					}
				}
			}
		})
	}
}

// withOrientation inserts an EXIF APP1 segment with the given orientation.
func withOrientation(jpg []byte, o int, bigEndian bool) []byte {
	tiff := []byte("II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	tiff[18] = byte(o)
	if bigEndian {
		tiff = []byte("MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00")
		tiff[19] = byte(o)
	}
	seg := append([]byte("Exif\x00\x00"), tiff...)
	n := len(seg) + 2
	out := append([]byte{0xFF, 0xD8, 0xFF, 0xE1, byte(n >> 8), byte(n)}, seg...)
	return append(out, jpg[2:]...)
}

func TestEXIFOrientation(t *testing.T) {
	// An asymmetric image: the upright result must match the transform.
	base := natural(40, 24, 3)
	src := encodeJPEG(t, base, 100)
	for _, lj := range decoders() {
		up := decodeFull(t, src, lj)
		at := func(img *image.NRGBA, x, y int) color.NRGBA { return img.NRGBAAt(x, y) }
		tests := []struct {
			name string
			o    int
			w, h int
			from func(x, y int) (int, int) // upright (x,y) → stored (x,y)
		}{
			{name: "1 normal", o: 1, w: 40, h: 24, from: func(x, y int) (int, int) { return x, y }},
			{name: "2 mirror", o: 2, w: 40, h: 24, from: func(x, y int) (int, int) { return 39 - x, y }},
			{name: "3 rotate 180", o: 3, w: 40, h: 24, from: func(x, y int) (int, int) { return 39 - x, 23 - y }},
			{name: "4 flip", o: 4, w: 40, h: 24, from: func(x, y int) (int, int) { return x, 23 - y }},
			{name: "5 transpose", o: 5, w: 24, h: 40, from: func(x, y int) (int, int) { return y, x }},
			{name: "6 rotate 90 cw", o: 6, w: 24, h: 40, from: func(x, y int) (int, int) { return y, 23 - x }},
			{name: "7 transverse", o: 7, w: 24, h: 40, from: func(x, y int) (int, int) { return 39 - y, 23 - x }},
			{name: "8 rotate 90 ccw", o: 8, w: 24, h: 40, from: func(x, y int) (int, int) { return 39 - y, x }},
		}
		for _, tc := range tests {
			t.Run(decName(lj)+"/"+tc.name, func(t *testing.T) {
				for _, be := range []bool{false, true} {
					s := withOrientation(src, tc.o, be)
					w, h, f, err := DecodeConfig(s)
					if err != nil || w != tc.w || h != tc.h || f != "jpeg" {
						t.Fatalf("DecodeConfig = %d, %d, %q, %v; want %d, %d, jpeg", w, h, f, err, tc.w, tc.h)
					}
					img := decodeFull(t, s, lj)
					if img.Bounds().Dx() != tc.w || img.Bounds().Dy() != tc.h {
						t.Fatalf("size %v, want %dx%d", img.Bounds(), tc.w, tc.h)
					}
					// Compare away from chroma edges: the luma path is exact.
					for _, p := range []image.Point{{0, 0}, {5, 3}, {tc.w - 1, 2}, {3, tc.h - 1}, {tc.w / 2, tc.h / 2}} {
						sx, sy := tc.from(p.X, p.Y)
						got, want := at(img, p.X, p.Y), at(up, sx, sy)
						if d := absDiff(got.G, want.G) + absDiff(got.R, want.R); d > 24 {
							t.Errorf("be=%v (%d,%d) = %v, want stored (%d,%d) = %v", be, p.X, p.Y, got, sx, sy, want)
						}
					}
				}
			})
		}
	}
}

func absDiff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}

func TestBadInputs(t *testing.T) {
	jpg := encodeJPEG(t, natural(64, 64, 2), 90)
	pngb := encodePNG(t, natural(64, 64, 2))
	prog := readTestdata(t, "video-001.progressive.jpeg")
	corrupt := append([]byte(nil), jpg...)
	for i := len(corrupt) / 2; i < len(corrupt)/2+200; i++ {
		corrupt[i] = 0xFF
	}
	tests := []struct {
		name  string
		src   []byte
		lim   Limits
		large bool
	}{
		{name: "empty", src: nil},
		{name: "garbage", src: []byte("not an image at all")},
		{name: "jpeg magic only", src: []byte{0xFF, 0xD8, 0xFF}},
		{name: "truncated jpeg header", src: jpg[:40]},
		{name: "truncated jpeg data", src: jpg[:len(jpg)/2]},
		{name: "corrupt jpeg data", src: corrupt},
		{name: "truncated progressive", src: prog[:len(prog)*2/3]},
		{name: "truncated png", src: pngb[:len(pngb)/2]},
		{name: "jpeg over pixel limit", src: jpg, lim: Limits{MaxPixels: 64*64 - 1}, large: true},
		{name: "png over pixel limit", src: pngb, lim: Limits{MaxPixels: 100}, large: true},
	}
	for _, tc := range tests {
		for _, lj := range decoders() {
			t.Run(tc.name+"/"+decName(lj), func(t *testing.T) {
				dec := decChoice(lj)
				p, err := ParsePipeline("imagenet-val", &PipelineOptions{Decoder: dec, Limits: tc.lim})
				if err != nil {
					t.Fatal(err)
				}
				err = p.Apply(make([]byte, p.RowBytes()), tc.src, nil)
				errCheck := Check(tc.src, tc.lim)
				if lj == (libjpegAvailable || libwebpAvailable) && !errors.Is(errCheck, ErrDecode) {
					t.Errorf("Check = %v, want ErrDecode", errCheck)
				}
				if tc.name == "truncated jpeg data" || tc.name == "corrupt jpeg data" {
					return // a region decode may stop before the damage; Check catches it
				}
				if !errors.Is(err, ErrDecode) {
					t.Fatalf("Apply = %v, want ErrDecode", err)
				}
				if errors.Is(err, ErrTooLarge) != tc.large {
					t.Errorf("Apply = %v; ErrTooLarge %v, want %v", err, !tc.large, tc.large)
				}
			})
		}
	}
}

func TestCheckAndDecodeConfig(t *testing.T) {
	srcs := map[string][]byte{"jpeg": encodeJPEG(t, natural(33, 21, 4), 90), "png": encodePNG(t, natural(33, 21, 4))}
	for want, src := range srcs {
		if err := Check(src, Limits{}); err != nil {
			t.Errorf("Check(%s) = %v", want, err)
		}
		w, h, f, err := DecodeConfig(src)
		if err != nil || w != 33 || h != 21 || f != want {
			t.Errorf("DecodeConfig = %d, %d, %q, %v; want 33, 21, %q", w, h, f, err, want)
		}
	}
	// A harmless libjpeg warning (unknown JFIF revision 2.01) is no error.
	app0 := []byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 'J', 'F', 'I', 'F', 0, 2, 1, 0, 0, 1, 0, 1, 0, 0}
	jfif2 := append(app0, srcs["jpeg"][2:]...)
	if err := Check(jfif2, Limits{}); err != nil {
		t.Errorf("Check(JFIF 2.01) = %v, want nil", err)
	}
	for _, bad := range [][]byte{[]byte("nope"), {0xFF, 0xD8, 0xFF}, srcs["jpeg"][:30], srcs["png"][:20]} {
		if _, _, _, err := DecodeConfig(bad); !errors.Is(err, ErrDecode) {
			t.Errorf("DecodeConfig(%q) = %v, want ErrDecode", bad, err)
		}
	}
}

func TestDecodeOtherFormats(t *testing.T) {
	base := natural(40, 30, 8)
	var gifBuf, bmpBuf bytes.Buffer
	pal := image.NewPaletted(base.Bounds(), palette.Plan9)
	draw.Draw(pal, pal.Bounds(), base, image.Point{}, draw.Src)
	if err := gif.Encode(&gifBuf, pal, nil); err != nil {
		t.Fatal(err)
	}
	if err := bmp.Encode(&bmpBuf, base); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		src  []byte
		want image.Image
	}{
		{name: "gif", src: gifBuf.Bytes(), want: pal},
		{name: "bmp", src: bmpBuf.Bytes(), want: base},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, h, f, err := DecodeConfig(tc.src)
			if err != nil || w != 40 || h != 30 || f != tc.name {
				t.Fatalf("DecodeConfig = %d, %d, %q, %v", w, h, f, err)
			}
			got := decodeFull(t, tc.src, false)
			for y := range 30 {
				for x := range 40 {
					c := color.NRGBAModel.Convert(tc.want.At(x, y)).(color.NRGBA)
					g := got.NRGBAAt(x, y)
					if g.R != c.R || g.G != c.G || g.B != c.B {
						t.Fatalf("(%d,%d) = %v, want %v", x, y, g, c)
					}
				}
			}
		})
	}
}
