package augment

import (
	"bytes"
	"image"
	"testing"
)

// TestExtremeSizes runs every op on tiny, thin and large-downscale images:
// no panic, the right size, and a uniform image stays uniform.
func TestExtremeSizes(t *testing.T) {
	sizes := []struct {
		name string
		w, h int
	}{
		{name: "1x1", w: 1, h: 1},
		{name: "1x300", w: 1, h: 300},
		{name: "3000x2", w: 3000, h: 2},
		{name: "odd 7x5", w: 7, h: 5},
		{name: "large downscale 1100x800", w: 1100, h: 800},
	}
	pipes := []string{
		"imagenet-train",
		"imagenet-val",
		"center_crop(size=3,5)",
		"random_resized_crop(size=8,scale=0.01:0.02,ratio=0.1:10)|hflip()",
		"resize(size=2)|center_crop(size=2)|color_jitter(brightness=1,contrast=1,saturation=1)|normalize()",
	}
	for _, sz := range sizes {
		t.Run(sz.name, func(t *testing.T) {
			img := image.NewNRGBA(image.Rect(0, 0, sz.w, sz.h))
			for i := 0; i < len(img.Pix); i += 4 {
				img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = 90, 140, 200, 255
			}
			srcs := map[string][]byte{"png": encodePNG(t, img), "jpeg": encodeJPEG(t, img, 100)}
			for _, text := range pipes {
				for kind, src := range srcs {
					for _, dec := range []string{"go", "auto"} {
						p, err := ParsePipeline(text, &PipelineOptions{Decoder: dec})
						if err != nil {
							t.Fatal(err)
						}
						dst := make([]byte, p.RowBytes())
						for i := range 2 {
							if err := p.Apply(dst, src, SampleRand(5, 0, int64(i))); err != nil {
								t.Fatalf("%s %s %s: %v", text, kind, dec, err)
							}
						}
						if p.Float32() || kind != "png" || text == "center_crop(size=3,5)" {
							continue // jitter, JPEG rounding or padding change the colour
						}
						want := bytes.Repeat([]byte{90, 140, 200}, len(dst)/3)
						if !bytes.Equal(dst, want) {
							t.Fatalf("%s on a uniform %s: not uniform, first pixels %v", text, kind, dst[:9])
						}
					}
				}
			}
		})
	}
}
