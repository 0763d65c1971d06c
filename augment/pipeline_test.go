package augment

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParsePipeline(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		want   string
		shape  []int
		dims   []string
		random bool
	}{
		{name: "preset train", text: "imagenet-train",
			want:  "random_resized_crop(size=224,scale=0.08:1,ratio=0.75:1.3333)|hflip(p=0.5)",
			shape: []int{224, 224, 3}, dims: []string{"H", "W", "C"}, random: true},
		{name: "preset val", text: " imagenet-val ",
			want:  "resize(size=256)|center_crop(size=224)",
			shape: []int{224, 224, 3}, dims: []string{"H", "W", "C"}},
		{name: "canonical is a fixed point", text: "random_resized_crop(size=224,scale=0.08:1,ratio=0.75:1.3333)|hflip(p=0.5)",
			want:  "random_resized_crop(size=224,scale=0.08:1,ratio=0.75:1.3333)|hflip(p=0.5)",
			shape: []int{224, 224, 3}, dims: []string{"H", "W", "C"}, random: true},
		{name: "args reordered, spaces, defaults", text: " random_resized_crop( ratio = 0.5:2.0 , size=128,96 ) | hflip ",
			want:  "random_resized_crop(size=128,96,scale=0.08:1,ratio=0.5:2)|hflip(p=0.5)",
			shape: []int{128, 96, 3}, dims: []string{"H", "W", "C"}, random: true},
		{name: "normalize", text: "center_crop(size=32)|normalize()",
			want:  "center_crop(size=32)|normalize(mean=0.485,0.456,0.406,std=0.229,0.224,0.225)",
			shape: []int{3, 32, 32}, dims: []string{"C", "H", "W"}},
		{name: "normalize custom", text: "center_crop(size=8)|normalize(std=0.5,0.5,0.5,mean=0.5,0.25,1e-05)",
			want:  "center_crop(size=8)|normalize(mean=0.5,0.25,1e-05,std=0.5,0.5,0.5)",
			shape: []int{3, 8, 8}, dims: []string{"C", "H", "W"}},
		{name: "jitter", text: "center_crop(size=8)|color_jitter(contrast=0.4)",
			want:  "center_crop(size=8)|color_jitter(brightness=0,contrast=0.4,saturation=0)",
			shape: []int{8, 8, 3}, dims: []string{"H", "W", "C"}, random: true},
		{name: "deterministic hflip and jitter", text: "center_crop(size=8)|hflip(p=1)|color_jitter()",
			want:  "center_crop(size=8)|hflip(p=1)|color_jitter(brightness=0,contrast=0,saturation=0)",
			shape: []int{8, 8, 3}, dims: []string{"H", "W", "C"}},
		{name: "exact resize", text: "resize(size=20,30)",
			want:  "resize(size=20,30)",
			shape: []int{20, 30, 3}, dims: []string{"H", "W", "C"}},
		{name: "exact square resize keeps both", text: "resize(size=20,20)",
			want:  "resize(size=20,20)",
			shape: []int{20, 20, 3}, dims: []string{"H", "W", "C"}},
		{name: "resize after a fixed size", text: "center_crop(size=100,200)|resize(size=50)",
			want:  "center_crop(size=100,200)|resize(size=50)",
			shape: []int{50, 100, 3}, dims: []string{"H", "W", "C"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePipeline(tc.text, nil)
			if err != nil {
				t.Fatalf("ParsePipeline(%q) = %v", tc.text, err)
			}
			if got := p.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
			if !slices.Equal(p.Shape(), tc.shape) || !slices.Equal(p.DimNames(), tc.dims) {
				t.Errorf("Shape, DimNames = %v, %v; want %v, %v", p.Shape(), p.DimNames(), tc.shape, tc.dims)
			}
			wantBytes := tc.shape[0] * tc.shape[1] * tc.shape[2]
			if p.Float32() {
				wantBytes *= 4
			}
			if p.RowBytes() != wantBytes || p.Float32() != (tc.dims[0] == "C") {
				t.Errorf("RowBytes, Float32 = %d, %v; want %d", p.RowBytes(), p.Float32(), wantBytes)
			}
			if p.Random() != tc.random {
				t.Errorf("Random() = %v, want %v", p.Random(), tc.random)
			}
			q, err := ParsePipeline(p.String(), nil)
			if err != nil || q.String() != p.String() || q.Fingerprint() != p.Fingerprint() {
				t.Errorf("reparse = %v, %v; want the same text and fingerprint", q, err)
			}
			if len(p.Fingerprint()) < 16 {
				t.Errorf("Fingerprint %q too short", p.Fingerprint())
			}
		})
	}
}

func TestParsePipelineErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		opts *PipelineOptions
	}{
		{name: "empty", text: ""},
		{name: "unknown op", text: "rotate(deg=3)|center_crop(size=3)"},
		{name: "resize alone", text: "resize(size=256)"},
		{name: "flip alone", text: "hflip(p=0.5)"},
		{name: "missing size", text: "center_crop()"},
		{name: "zero size", text: "center_crop(size=0)"},
		{name: "huge size", text: "center_crop(size=99999)"},
		{name: "three sizes", text: "center_crop(size=1,2,3)"},
		{name: "resize three sizes", text: "center_crop(size=4)|resize(size=2,3,4)"},
		{name: "unknown arg", text: "center_crop(size=4,foo=1)"},
		{name: "repeated arg", text: "center_crop(size=4,size=5)"},
		{name: "list before key", text: "center_crop(,size=4)"},
		{name: "unbalanced", text: "center_crop(size=4"},
		{name: "nested", text: "center_crop(size=(4))"},
		{name: "bad scale", text: "random_resized_crop(size=4,scale=0.5:0.1)"},
		{name: "scale not a range", text: "random_resized_crop(size=4,scale=0.5)"},
		{name: "scale above 1", text: "random_resized_crop(size=4,scale=0.5:2)"},
		{name: "bad ratio", text: "random_resized_crop(size=4,ratio=0:1)"},
		{name: "NaN p", text: "center_crop(size=4)|hflip(p=NaN)"},
		{name: "p above 1", text: "center_crop(size=4)|hflip(p=1.5)"},
		{name: "negative jitter", text: "center_crop(size=4)|color_jitter(brightness=-1)"},
		{name: "zero std", text: "center_crop(size=4)|normalize(std=0,1,1)"},
		{name: "two means", text: "center_crop(size=4)|normalize(mean=1,2)"},
		{name: "op after normalize", text: "center_crop(size=4)|normalize()|hflip()"},
		{name: "empty op", text: "center_crop(size=4)||hflip()"},
		{name: "unknown decoder", text: "imagenet-val", opts: &PipelineOptions{Decoder: "pil"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePipeline(tc.text, tc.opts)
			if !errors.Is(err, ErrPipeline) {
				t.Fatalf("ParsePipeline(%q) = %v, %v; want ErrPipeline", tc.text, p, err)
			}
		})
	}
}

// TestUnknownOp: a name that is neither an op nor a preset is an
// UnknownOpError naming it, whose message lists the ops and the presets.
func TestUnknownOp(t *testing.T) {
	for _, text := range []string{"imagenet", "rotate(deg=3)|center_crop(size=3)"} {
		_, err := ParsePipeline(text, nil)
		var ue *UnknownOpError
		if !errors.As(err, &ue) || !errors.Is(err, ErrPipeline) || !strings.HasPrefix(text, ue.Name) {
			t.Fatalf("ParsePipeline(%q) = %v; want an UnknownOpError naming its first op", text, err)
		}
		for _, want := range append(OpNames(), Presets()...) {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%v: does not name %s", err, want)
			}
		}
	}
	if got := Presets(); !slices.Equal(got, []string{"imagenet-train", "imagenet-val"}) {
		t.Errorf("Presets() = %q", got)
	}
}

func TestFingerprint(t *testing.T) {
	fp := func(text, dec string) string {
		p, err := ParsePipeline(text, &PipelineOptions{Decoder: dec})
		if err != nil {
			t.Fatal(err)
		}
		return p.Fingerprint()
	}
	base := fp("imagenet-train", "go")
	if fp(presets["imagenet-train"], "go") != base {
		t.Error("preset and its text differ")
	}
	if fp("random_resized_crop(size=224)|hflip(p=0.4)", "go") == base {
		t.Error("different p, same fingerprint")
	}
	if libjpegAvailable && fp("imagenet-train", "auto") == base {
		t.Error("different decoder, same fingerprint")
	}
	// Limits decide which files are undecodable: other limits, another
	// output; the defaults spelled out change nothing.
	withLimits := func(lim Limits) string {
		p, err := ParsePipeline("imagenet-train", &PipelineOptions{Decoder: "go", Limits: lim})
		if err != nil {
			t.Fatal(err)
		}
		return p.Fingerprint()
	}
	if withLimits(Limits{MaxPixels: 1 << 26, MaxScans: 500, MaxScanSamples: 1 << 31}) != base {
		t.Error("the default limits spelled out changed the fingerprint")
	}
	for _, lim := range []Limits{{MaxScans: 3000}, {MaxPixels: 1 << 20}, {MaxScanSamples: 1 << 40}} {
		if withLimits(lim) == base {
			t.Errorf("limits %+v, same fingerprint as the defaults", lim)
		}
	}
	p, _ := ParsePipeline("imagenet-train", nil)
	if p.Decoder() != DecoderName() {
		t.Errorf("Decoder() = %q, want DecoderName() %q", p.Decoder(), DecoderName())
	}
	if len(Ops()) < 6 {
		t.Errorf("Ops() = %q, want a line per op", Ops())
	}
}
