package augment

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// PipelineOptions configures ParsePipeline. The zero value means defaults.
type PipelineOptions struct {
	// Decoder picks the decoders: "" or "auto" uses the C libraries built
	// in (libjpeg-turbo for JPEG, libwebp for WebP); "go" the pure-Go
	// decoders for every format; "libjpeg-turbo" is auto that requires
	// libjpeg-turbo. See ResolveDecoder.
	Decoder string
	Limits  Limits
}

type opKind uint8

const (
	opRandomResizedCrop opKind = iota + 1
	opResize
	opCenterCrop
	opHFlip
	opColorJitter
	opNormalize
)

// opInfo describes an op: its name, implementation version (bump it when
// the op's output changes) and --help line.
var opInfo = [...]struct {
	name    string
	version int
	help    string
}{
	opRandomResizedCrop: {"random_resized_crop", 1, "random_resized_crop(size=H[,W],scale=0.08:1,ratio=0.75:1.3333)  random area/aspect crop, resized to size"},
	opResize:            {"resize", 1, "resize(size=N)  shorter side to N, aspect kept; resize(size=H,W): exactly H×W"},
	opCenterCrop:        {"center_crop", 1, "center_crop(size=H[,W])  central crop, zero-padded when larger than the image"},
	opHFlip:             {"hflip", 1, "hflip(p=0.5)  horizontal flip with probability p"},
	opColorJitter:       {"color_jitter", 1, "color_jitter(brightness=0,contrast=0,saturation=0)  random factors in [max(0,1-x),1+x], random order"},
	opNormalize:         {"normalize", 1, "normalize(mean=0.485,0.456,0.406,std=0.229,0.224,0.225)  float32 CHW (v/255-mean)/std; last op"},
}

// coreVersion versions what every pipeline shares: decoding to planes, the
// resampler and the final colour conversion. 2: decoded pixels follow
// Pillow's (CMYK JPEGs, libjpeg's chroma replication for 4:1:1, 4:1:0 and
// tiny JPEGs). 3: GIF's transparent pixels keep their colour, the first
// frame sits on the screen's canvas. 4: WebP through libwebp, or with
// limited-range VP8 and transparent colours kept.
const coreVersion = 4

// Presets are named pipelines.
var presets = map[string]string{
	"imagenet-train": "random_resized_crop(size=224)|hflip(p=0.5)",
	"imagenet-val":   "resize(size=256)|center_crop(size=224)",
}

// Presets returns the names of the presets, sorted.
func Presets() []string {
	return slices.Sorted(maps.Keys(presets))
}

// OpNames returns the names of the ops, in the order Ops lists them.
func OpNames() []string {
	names := make([]string, 0, len(opInfo)-1)
	for _, o := range opInfo[1:] {
		names = append(names, o.name)
	}
	return names
}

// An UnknownOpError reports a name in pipeline text that is neither an op
// nor a preset (a preset stands alone, as the whole text). It wraps
// ErrPipeline.
type UnknownOpError struct {
	Name string
}

func (e *UnknownOpError) Error() string {
	return fmt.Sprintf("%v: unknown op %q; the ops are %s, the presets %s", ErrPipeline, e.Name,
		strings.Join(OpNames(), ", "), strings.Join(Presets(), ", "))
}

// Unwrap makes errors.Is(err, ErrPipeline) hold.
func (e *UnknownOpError) Unwrap() error { return ErrPipeline }

// Ops lists the ops and presets with their arguments and defaults, one a
// line, for --help.
func Ops() []string {
	out := make([]string, 0, len(opInfo)+2)
	for _, o := range opInfo[1:] {
		out = append(out, o.help)
	}
	out = append(out,
		"preset imagenet-train = "+presets["imagenet-train"],
		"preset imagenet-val = "+presets["imagenet-val"])
	return out
}

type op struct {
	kind   opKind
	h, w   int        // size: random_resized_crop, center_crop; resize uses h
	scale  [2]float64 // random_resized_crop
	ratio  [2]float64 // random_resized_crop
	p      float64    // hflip
	jitter [3]float64 // brightness, contrast, saturation
	mean   [3]float64
	std    [3]float64
	exact  bool // resize to h×w rather than the shorter side to h
}

// A Pipeline is a parsed, immutable list of ops. It is safe for concurrent use.
type Pipeline struct {
	ops     []op
	text    string
	fp      string
	useC    bool // the C decoders built in (libjpeg-turbo, libwebp)
	decName string
	lim     Limits
	outH    int
	outW    int
	float   bool
	random  bool

	fullDecode bool // tests and benchmarks: never stop a JPEG decode early
	noSIMD     bool // tests and benchmarks: the Go loops only, not package simd
}

// ParsePipeline parses a preset name or pipeline text (see the package
// documentation for the grammar). opts may be nil.
func ParsePipeline(text string, opts *PipelineOptions) (*Pipeline, error) {
	var o PipelineOptions
	if opts != nil {
		o = *opts
	}
	p := &Pipeline{lim: o.Limits}
	var err error
	if p.useC, err = parseDecoder(o.Decoder); err != nil {
		return nil, err
	}
	p.decName = decoderName(p.useC)
	text = strings.TrimSpace(text)
	if pre, ok := presets[text]; ok {
		text = pre
	}
	if text == "" {
		return nil, fmt.Errorf("%w: empty", ErrPipeline)
	}
	for _, s := range strings.Split(text, "|") {
		op, err := parseOp(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		p.ops = append(p.ops, op)
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	names := make([]string, len(p.ops))
	for i, op := range p.ops {
		names[i] = op.String()
	}
	p.text = strings.Join(names, "|")
	h := sha256.New()
	fmt.Fprintf(h, "loaderd/augment core=%d\ndecoder=%s\npipeline=%s\n", coreVersion, p.decName, p.text)
	for _, op := range p.ops {
		fmt.Fprintf(h, "%s=%d\n", opInfo[op.kind].name, opInfo[op.kind].version)
	}
	// Which files are undecodable depends on the limits, hence which
	// sample a row holds: limits other than the defaults are part of the
	// output (the defaults leave the fingerprint as it always was).
	if lim := p.lim.effective(); lim != (Limits{}).effective() {
		fmt.Fprintf(h, "limits=%d,%d,%d\n", lim.MaxPixels, lim.MaxScans, lim.MaxScanSamples)
	}
	p.fp = hex.EncodeToString(h.Sum(nil)[:16])
	return p, nil
}

// check derives the output shape and rejects pipelines without one.
func (p *Pipeline) check() error {
	h, w := 0, 0 // 0: depends on the image
	for _, op := range p.ops {
		if p.float {
			return fmt.Errorf("%w: normalize must be the last op", ErrPipeline)
		}
		switch op.kind {
		case opRandomResizedCrop:
			h, w = op.h, op.w
			p.random = true
		case opCenterCrop:
			h, w = op.h, op.w
		case opResize:
			if op.exact {
				h, w = op.h, op.w
			} else if h > 0 {
				h, w = resizeShorter(w, h, op.h)
			}
		case opHFlip:
			p.random = p.random || (op.p > 0 && op.p < 1)
		case opColorJitter:
			p.random = p.random || op.jitter != [3]float64{}
		case opNormalize:
			p.float = true
		}
	}
	if h <= 0 || w <= 0 {
		return fmt.Errorf("%w: output size depends on the image; end with random_resized_crop, center_crop or resize(size=H,W)", ErrPipeline)
	}
	if int64(h)*int64(w) > 1<<26 {
		return fmt.Errorf("%w: output %dx%d too large", ErrPipeline, h, w)
	}
	p.outH, p.outW = h, w
	return nil
}

// resizeShorter returns the size torchvision's Resize(size) gives a w×h image.
func resizeShorter(w, h, size int) (nh, nw int) {
	if w <= h {
		return max(int(float64(size)*float64(h)/float64(w)), 1), size
	}
	return size, max(int(float64(size)*float64(w)/float64(h)), 1)
}

// String returns the canonical text of the pipeline.
func (p *Pipeline) String() string { return p.text }

// Fingerprint identifies the pipeline's output: a hex hash of the canonical
// text, each op's implementation version and the decoder name.
func (p *Pipeline) Fingerprint() string { return p.fp }

// Decoder returns the name of the JPEG decoder the pipeline uses.
func (p *Pipeline) Decoder() string { return p.decName }

// Shape returns the shape of one output sample: [H,W,3] (uint8) or
// [3,H,W] (float32) after normalize.
func (p *Pipeline) Shape() []int {
	if p.float {
		return []int{3, p.outH, p.outW}
	}
	return []int{p.outH, p.outW, 3}
}

// DimNames names the dimensions of Shape.
func (p *Pipeline) DimNames() []string {
	if p.float {
		return []string{"C", "H", "W"}
	}
	return []string{"H", "W", "C"}
}

// Float32 reports whether samples are float32 (the pipeline ends in normalize).
func (p *Pipeline) Float32() bool { return p.float }

// RowBytes returns the size in bytes of one output sample.
func (p *Pipeline) RowBytes() int {
	n := p.outH * p.outW * 3
	if p.float {
		return 4 * n
	}
	return n
}

// Random reports whether any op draws random numbers that change its output.
func (p *Pipeline) Random() bool { return p.random }

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func fmtSize(h, w int) string {
	if h == w {
		return strconv.Itoa(h)
	}
	return strconv.Itoa(h) + "," + strconv.Itoa(w)
}

func (o op) String() string {
	name := opInfo[o.kind].name
	switch o.kind {
	case opRandomResizedCrop:
		return fmt.Sprintf("%s(size=%s,scale=%s:%s,ratio=%s:%s)", name, fmtSize(o.h, o.w),
			fmtFloat(o.scale[0]), fmtFloat(o.scale[1]), fmtFloat(o.ratio[0]), fmtFloat(o.ratio[1]))
	case opResize:
		if o.exact {
			return fmt.Sprintf("%s(size=%d,%d)", name, o.h, o.w)
		}
		return fmt.Sprintf("%s(size=%d)", name, o.h)
	case opCenterCrop:
		return fmt.Sprintf("%s(size=%s)", name, fmtSize(o.h, o.w))
	case opHFlip:
		return fmt.Sprintf("%s(p=%s)", name, fmtFloat(o.p))
	case opColorJitter:
		return fmt.Sprintf("%s(brightness=%s,contrast=%s,saturation=%s)", name,
			fmtFloat(o.jitter[0]), fmtFloat(o.jitter[1]), fmtFloat(o.jitter[2]))
	case opNormalize:
		return fmt.Sprintf("%s(mean=%s,%s,%s,std=%s,%s,%s)", name,
			fmtFloat(o.mean[0]), fmtFloat(o.mean[1]), fmtFloat(o.mean[2]),
			fmtFloat(o.std[0]), fmtFloat(o.std[1]), fmtFloat(o.std[2]))
	}
	return name
}

// parseOp parses `name(key=value,...)` or a bare `name`.
func parseOp(s string) (op, error) {
	name, rest, hasArgs := strings.Cut(s, "(")
	name = strings.TrimSpace(name)
	args := map[string][]string{}
	if hasArgs {
		body, ok := strings.CutSuffix(strings.TrimSpace(rest), ")")
		if !ok || strings.ContainsAny(body, "()") {
			return op{}, fmt.Errorf("%w: %q: unbalanced parentheses", ErrPipeline, s)
		}
		if strings.TrimSpace(body) != "" {
			key := ""
			for _, tok := range strings.Split(body, ",") {
				tok = strings.TrimSpace(tok)
				k, v, isKV := strings.Cut(tok, "=")
				if isKV {
					key = strings.TrimSpace(k)
					if _, dup := args[key]; dup || key == "" {
						return op{}, fmt.Errorf("%w: %s: argument %q repeated or empty", ErrPipeline, name, key)
					}
					tok = strings.TrimSpace(v)
				}
				if key == "" || tok == "" {
					return op{}, fmt.Errorf("%w: %s: bad argument list %q", ErrPipeline, name, body)
				}
				args[key] = append(args[key], tok)
			}
		}
	}
	o := op{}
	for k := range opInfo {
		if k > 0 && opInfo[k].name == name {
			o.kind = opKind(k)
		}
	}
	a := argReader{op: name, args: args}
	switch o.kind {
	case opRandomResizedCrop:
		o.h, o.w = a.size("size", true)
		o.scale = a.rng("scale", [2]float64{0.08, 1})
		o.ratio = a.rng("ratio", [2]float64{0.75, 1.3333})
		if a.err == nil && !(o.scale[0] > 0 && o.scale[0] <= o.scale[1] && o.scale[1] <= 1) {
			a.fail("scale must satisfy 0 < a <= b <= 1")
		}
		if a.err == nil && !(o.ratio[0] > 0 && o.ratio[0] <= o.ratio[1]) {
			a.fail("ratio must satisfy 0 < a <= b")
		}
	case opResize:
		o.h, o.w = a.size("size", true)
		o.exact = len(args["size"]) == 2
	case opCenterCrop:
		o.h, o.w = a.size("size", true)
	case opHFlip:
		o.p = a.float("p", 0.5)
		if a.err == nil && !(o.p >= 0 && o.p <= 1) {
			a.fail("p must be in [0,1]")
		}
	case opColorJitter:
		for i, k := range []string{"brightness", "contrast", "saturation"} {
			o.jitter[i] = a.float(k, 0)
			if a.err == nil && !(o.jitter[i] >= 0 && o.jitter[i] <= 1e6) {
				a.fail(k + " must be >= 0")
			}
		}
	case opNormalize:
		o.mean = a.triple("mean", [3]float64{0.485, 0.456, 0.406})
		o.std = a.triple("std", [3]float64{0.229, 0.224, 0.225})
		for _, s := range o.std {
			if a.err == nil && !(s > 0 || s < 0) {
				a.fail("std must not be 0")
			}
		}
	default:
		return op{}, &UnknownOpError{Name: name}
	}
	for k := range a.args {
		if !a.used[k] {
			a.fail("unknown argument " + strconv.Quote(k))
		}
	}
	return o, a.err
}

// argReader reads typed arguments of one op, remembering the first error.
type argReader struct {
	op   string
	args map[string][]string
	used map[string]bool
	err  error
}

func (a *argReader) fail(msg string) {
	if a.err == nil {
		a.err = fmt.Errorf("%w: %s: %s", ErrPipeline, a.op, msg)
	}
}

func (a *argReader) get(key string) ([]string, bool) {
	if a.used == nil {
		a.used = map[string]bool{}
	}
	a.used[key] = true
	v, ok := a.args[key]
	return v, ok
}

func (a *argReader) size(key string, two bool) (h, w int) {
	v, ok := a.get(key)
	if !ok {
		a.fail(key + " is required")
		return 0, 0
	}
	if len(v) > 2 || (len(v) == 2 && !two) {
		a.fail(key + ": too many values")
		return 0, 0
	}
	var n [2]int
	for i, s := range v {
		x, err := strconv.Atoi(s)
		if err != nil || x < 1 || x > 16384 {
			a.fail(key + ": want an integer in [1,16384], got " + strconv.Quote(s))
			return 0, 0
		}
		n[i] = x
	}
	if len(v) == 1 {
		n[1] = n[0]
	}
	return n[0], n[1]
}

func parseFloat(s string) (float64, bool) {
	x, err := strconv.ParseFloat(s, 64)
	return x, err == nil && !math.IsNaN(x) && !math.IsInf(x, 0)
}

func (a *argReader) float(key string, def float64) float64 {
	v, ok := a.get(key)
	if !ok {
		return def
	}
	if len(v) != 1 {
		a.fail(key + ": want one number")
		return def
	}
	x, good := parseFloat(v[0])
	if !good {
		a.fail(key + ": not a finite number: " + strconv.Quote(v[0]))
		return def
	}
	return x
}

func (a *argReader) rng(key string, def [2]float64) [2]float64 {
	v, ok := a.get(key)
	if !ok {
		return def
	}
	lo, hi, isRange := strings.Cut(v[0], ":")
	if len(v) != 1 || !isRange {
		a.fail(key + ": want a range a:b")
		return def
	}
	x, ok1 := parseFloat(strings.TrimSpace(lo))
	y, ok2 := parseFloat(strings.TrimSpace(hi))
	if !ok1 || !ok2 {
		a.fail(key + ": bad range " + strconv.Quote(v[0]))
		return def
	}
	return [2]float64{x, y}
}

func (a *argReader) triple(key string, def [3]float64) [3]float64 {
	v, ok := a.get(key)
	if !ok {
		return def
	}
	if len(v) != 3 {
		a.fail(key + ": want three numbers r,g,b")
		return def
	}
	var out [3]float64
	for i, s := range v {
		x, good := parseFloat(s)
		if !good {
			a.fail(key + ": not a finite number: " + strconv.Quote(s))
			return def
		}
		out[i] = x
	}
	return out
}
