package augment

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func FuzzDecode(f *testing.F) {
	for _, name := range []string{"video-001.q50.420.jpeg", "video-001.q50.420.progressive.jpeg", "video-001.cmyk.jpeg",
		"video-005.gray.q50.jpeg", "video-001.221212.jpeg"} {
		if b, err := readTestdataErr(name); err == nil {
			f.Add(b)
		}
	}
	for _, b := range pngVariants(f) {
		f.Add(b)
	}
	for _, e := range readPillowCorpus(f).Files { // every format and variant
		f.Add(readTestdata(f, "pillow/"+e.File))
	}
	small := encodeJPEG(f, natural(24, 16, 1), 80)
	f.Add(small)
	f.Add(withOrientation(small, 6, true))
	f.Add(small[:len(small)/2])
	f.Add(progressiveJPEG(16, 8, 1, 600)) // over the scan limit
	f.Add(progressiveJPEG(16, 8, 3, 40))
	lim := Limits{MaxPixels: 1 << 20}
	var pipes []*Pipeline
	for _, dec := range []string{"go", "auto"} {
		p, err := ParsePipeline("random_resized_crop(size=16)|hflip()|color_jitter(brightness=0.3,contrast=0.3,saturation=0.3)", &PipelineOptions{Decoder: dec, Limits: lim})
		if err != nil {
			f.Fatal(err)
		}
		pipes = append(pipes, p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkErr := Check(b, lim)
		if checkErr != nil && !errors.Is(checkErr, ErrDecode) {
			t.Fatalf("Check error %v does not wrap ErrDecode", checkErr)
		}
		if _, _, _, err := DecodeConfig(b); err != nil && !errors.Is(err, ErrDecode) {
			t.Fatalf("DecodeConfig error %v does not wrap ErrDecode", err)
		}
		for _, p := range pipes {
			dst := make([]byte, p.RowBytes())
			err := p.Apply(dst, b, rand.New(rand.NewPCG(1, 2)))
			if err != nil && !errors.Is(err, ErrDecode) {
				t.Fatalf("Apply error %v does not wrap ErrDecode", err)
			}
			// Apply may decode less than Check: it can only fail where Check does.
			if checkErr == nil && err != nil && p.useC == (libjpegAvailable || libwebpAvailable) {
				t.Fatalf("Check passed but Apply failed: %v", err)
			}
			errChecked := p.ApplyMultiChecked([][]byte{dst}, b, []*rand.Rand{rand.New(rand.NewPCG(1, 2))})
			if p.useC == (libjpegAvailable || libwebpAvailable) && (errChecked == nil) != (checkErr == nil) {
				t.Fatalf("ApplyMultiChecked = %v but Check = %v", errChecked, checkErr)
			}
		}
	})
}

func FuzzParsePipeline(f *testing.F) {
	for _, s := range []string{"imagenet-train", "imagenet-val", goldenPipelines[2], goldenPipelines[3],
		"center_crop(size=3,4)|hflip", "random_resized_crop(size=1,scale=1:1,ratio=1e-3:1e3)", "normalize(mean=1,2)", "((", "|", "a(b=c,d)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePipeline(s, nil)
		if err != nil {
			if !errors.Is(err, ErrPipeline) {
				t.Fatalf("error %v does not wrap ErrPipeline", err)
			}
			return
		}
		q, err := ParsePipeline(p.String(), nil)
		if err != nil {
			t.Fatalf("canonical %q does not parse: %v", p.String(), err)
		}
		if q.String() != p.String() || q.Fingerprint() != p.Fingerprint() {
			t.Fatalf("canonical %q reparses as %q", p.String(), q.String())
		}
		if p.RowBytes() <= 0 || len(p.Shape()) != 3 {
			t.Fatalf("bad shape %v", p.Shape())
		}
	})
}
