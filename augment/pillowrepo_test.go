package augment

import (
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// pillowRepoKnown are the files of Pillow's test images where loaderd
// differs from Pillow 9.4 on purpose, with the reason.
var pillowRepoKnown = map[string]string{
	"hopper_bad_exif.jpg":       "corrupt entropy data (bad Huffman code): undecodable by policy",
	"bmp__g__pal4rle.bmp":       "odd RLE4 absolute runs, which Pillow 9.4 misreads; loaderd matches the BMP suite's pal4.png",
	"bmp__q__pal4rletrns.bmp":   "RLE4 deltas and odd runs, which Pillow 9.4 misreads",
	"bmp__q__pal8rletrns.bmp":   "RLE8 deltas, which Pillow 9.4 misreads; loaderd matches Pillow's newer pal8rletrns.png",
	"bmp__b__badrle.bmp":        "a bad RLE file (BMP suite 'b'): runs past the row end, clipped here",
	"png_decompression_dos.png": "Pillow refuses its oversized text chunk; loaderd ignores text chunks",
}

// TestPillowRepoImages decodes Pillow's own test images (Tests/images of
// python-pillow/Pillow, 599 JPEG, PNG, WebP, GIF and BMP files) with every
// decoder set and compares with this machine's Pillow, as prepared by
// testdata/pillow/pillow_repo.py into $LOADERD_PILLOW_IMAGES. Those images
// are not in this repository (their licences vary), so the test needs the
// directory: it is a measurement to rerun, not part of CI.
func TestPillowRepoImages(t *testing.T) {
	dir := os.Getenv("LOADERD_PILLOW_IMAGES")
	if dir == "" {
		t.Skip("needs $LOADERD_PILLOW_IMAGES, a directory made by testdata/pillow/pillow_repo.py from a Pillow checkout")
	}
	var rep struct {
		Pillow string `json:"pillow"`
		Files  map[string]struct {
			OK     bool   `json:"ok"`
			Format string `json:"format"`
			Mode   string `json:"mode"`
			Err    string `json:"err"`
		} `json:"files"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "pillow.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range rep.Files {
			if !yield(n) {
				return
			}
		}
	})
	count := map[string]int{}
	for _, n := range names {
		r := rep.Files[n]
		src, err := os.ReadFile(filepath.Join(dir, "in", n))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range decoders() {
			img, err := decodeWith(src, c)
			verdict, detail := "", ""
			switch {
			case err != nil && !errors.Is(err, ErrDecode):
				t.Errorf("%s %s: error %v does not wrap ErrDecode", decName(c), n, err)
			case !r.OK && err != nil:
				verdict = "refused by both"
			case !r.OK:
				verdict, detail = "decoded here, refused by Pillow", r.Err
			case err != nil:
				verdict, detail = "refused here", err.Error()
			default:
				want := readPNGFile(t, filepath.Join(dir, "exp", n+".png"))
				if want.Bounds() != img.Bounds() {
					verdict, detail = "size differs", fmt.Sprintf("%v, Pillow %v", img.Bounds().Size(), want.Bounds().Size())
					break
				}
				mad, maxd := pixelDiff(img, want)
				verdict = "within the tolerance"
				if mad >= 1 || maxd > 4 {
					verdict, detail = "outside the tolerance", fmt.Sprintf("mean %.2f, max %d", mad, maxd)
				}
			}
			count[decName(c)+": "+verdict]++
			if detail == "" {
				continue
			}
			if why, ok := pillowRepoKnown[n]; ok || verdict == "decoded here, refused by Pillow" {
				t.Logf("%s %s (%s %s): %s: %s (%s)", decName(c), n, r.Format, r.Mode, verdict, detail, why)
			} else {
				t.Errorf("%s %s (%s %s): %s: %s", decName(c), n, r.Format, r.Mode, verdict, detail)
			}
		}
	}
	var sum []string
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range count {
			if !yield(k) {
				return
			}
		}
	}) {
		sum = append(sum, fmt.Sprintf("%s %d", k, count[k]))
	}
	t.Logf("%d of Pillow's test images against Pillow %s:\n  %s", len(names), rep.Pillow, strings.Join(sum, "\n  "))
}

func readPNGFile(t *testing.T, p string) *image.NRGBA {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	out := image.NewNRGBA(img.Bounds())
	draw.Draw(out, out.Bounds(), img, img.Bounds().Min, draw.Src)
	return out
}
