package augment

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"strings"
)

// DecoderName returns the name of the decoders "auto" selects, with their
// versions: libjpeg-turbo for JPEG and libwebp for WebP where built in,
// else Go's. It is part of every pipeline fingerprint.
func DecoderName() string {
	name, _ := ResolveDecoder("auto")
	return name
}

// ResolveDecoder returns the name (with versions) of the decoders a
// decoder choice selects, as PipelineOptions.Decoder takes it: "" or
// "auto" (the C libraries built in: libjpeg-turbo for JPEG, libwebp for
// WebP), "go" (pure Go for every format), "libjpeg-turbo" (as auto, but
// libjpeg-turbo must be built in). PNG, GIF and BMP always go through Go.
// A choice that is unknown or not built in gives an error wrapping
// ErrPipeline.
func ResolveDecoder(choice string) (string, error) {
	useC, err := parseDecoder(choice)
	if err != nil {
		return "", err
	}
	return decoderName(useC), nil
}

// DecoderChoices returns the decoder choices PipelineOptions.Decoder
// accepts besides "": "auto", "libjpeg-turbo" ("libjpeg" is its alias)
// and "go". Whether libjpeg-turbo is built in is ResolveDecoder's to say.
func DecoderChoices() []string { return []string{"auto", "libjpeg-turbo", "go"} }

// decoderName names the decoders in use: the C libraries when useC and
// built in, Go's otherwise.
func decoderName(useC bool) string {
	jpeg, webp := "image/jpeg", "x/image/webp"
	if useC && libjpegAvailable {
		jpeg = libjpegName
	}
	if useC && libwebpAvailable {
		webp = libwebpName
	}
	if !useC || !libjpegAvailable && !libwebpAvailable {
		return "go (" + jpeg + ", " + webp + ")"
	}
	return jpeg + " + " + webp
}

// parseDecoder reports whether a decoder choice uses the C libraries built in.
func parseDecoder(choice string) (useC bool, err error) {
	switch choice {
	case "", "auto":
		return libjpegAvailable || libwebpAvailable, nil
	case "go":
		return false, nil
	case "libjpeg-turbo", "libjpeg":
		if !libjpegAvailable {
			return false, fmt.Errorf("%w: decoder %q not built in (cgo off or -tags nolibjpeg)", ErrPipeline, choice)
		}
		return true, nil
	}
	return false, fmt.Errorf("%w: unknown decoder %q (want one of %s)", ErrPipeline, choice, strings.Join(DecoderChoices(), ", "))
}

// A format is a file format and its pure-Go decoder. JPEG goes through
// libjpeg-turbo instead when the decoder choice says so.
type format struct {
	name   string
	size   func(src []byte) (w, h int, err error) // from the header only
	decode func(src []byte, lim Limits) (*frame, error)
}

var (
	fmtJPEG = format{"jpeg", jpegSize, goLibrary("jpeg", jpeg.DecodeConfig, jpeg.Decode)}
	fmtPNG  = format{"png", libraryConfig("png", png.DecodeConfig), goLibrary("png", png.DecodeConfig, png.Decode)}
	fmtGIF  = format{"gif", gifSize, decodeGIF}
	fmtBMP  = format{"bmp", bmpSize, decodeBMP}
	fmtWebP = format{"webp", webpSize, decodeWebPGo}
)

// sniff recognises the image format by its magic bytes.
func sniff(b []byte) (format, bool) {
	switch {
	case len(b) >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF:
		return fmtJPEG, true
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return fmtPNG, true
	case bytes.HasPrefix(b, []byte("GIF8")):
		return fmtGIF, true
	case bytes.HasPrefix(b, []byte("BM")):
		return fmtBMP, true
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return fmtWebP, true
	}
	return format{}, false
}

// DecodeConfig reports the size of the image as the pipeline sees it (EXIF
// orientation applied) and its format ("jpeg", "png", "gif", "bmp",
// "webp"), reading only the header.
func DecodeConfig(src []byte) (w, h int, format string, err error) {
	f, ok := sniff(src)
	if !ok {
		return 0, 0, "", fmt.Errorf("%w: unknown format", ErrDecode)
	}
	w, h, err = f.size(src)
	if err != nil {
		return 0, 0, f.name, err
	}
	if w <= 0 || h <= 0 {
		return 0, 0, f.name, fmt.Errorf("%w: %s: empty image %dx%d", ErrDecode, f.name, w, h)
	}
	return w, h, f.name, nil
}

// jpegSize reads the frame header (also of the JPEGs only libjpeg-turbo
// decodes) and applies the EXIF orientation.
func jpegSize(src []byte) (w, h int, err error) {
	w, h, o := jpegHeader(src)
	if w <= 0 || h <= 0 {
		return 0, 0, fmt.Errorf("%w: jpeg: no frame header", ErrDecode)
	}
	if o >= 5 {
		w, h = h, w
	}
	return w, h, nil
}

// libraryConfig adapts a Go library's DecodeConfig: errors and panics wrap
// ErrDecode.
func libraryConfig(name string, config func(io.Reader) (image.Config, error)) func([]byte) (int, int, error) {
	return func(src []byte) (w, h int, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%w: %s: %v", ErrDecode, name, r)
			}
		}()
		cfg, err := config(bytes.NewReader(src))
		if err != nil {
			return 0, 0, fmt.Errorf("%w: %s: %w", ErrDecode, name, err)
		}
		return cfg.Width, cfg.Height, nil
	}
}

// goLibrary adapts a Go library's decoder: the header's size is checked
// against the limits first, errors and panics wrap ErrDecode, and the
// image becomes planes.
func goLibrary(name string, config func(io.Reader) (image.Config, error), decode func(io.Reader) (image.Image, error)) func([]byte, Limits) (*frame, error) {
	size := libraryConfig(name, config)
	return func(src []byte, lim Limits) (f *frame, err error) {
		w, h, err := size(src)
		if err != nil {
			return nil, err
		}
		if err := checkPixels(w, h, lim); err != nil {
			return nil, err
		}
		defer func() {
			if r := recover(); r != nil {
				f, err = nil, fmt.Errorf("%w: %s: %v", ErrDecode, name, r)
			}
		}()
		img, err := decode(bytes.NewReader(src))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrDecode, name, err)
		}
		f = frameFromImage(img)
		if f.w != w || f.h != h {
			return nil, fmt.Errorf("%w: %s: size %dx%d differs from header %dx%d", ErrDecode, name, f.w, f.h, w, h)
		}
		return f, nil
	}
}

func checkPixels(w, h int, lim Limits) error {
	if w <= 0 || h <= 0 {
		return fmt.Errorf("%w: empty image %dx%d", ErrDecode, w, h)
	}
	if int64(w)*int64(h) > lim.maxPixels() {
		return fmt.Errorf("%w: %w: %dx%d > %d pixels", ErrDecode, ErrTooLarge, w, h, lim.maxPixels())
	}
	return nil
}

// Check fully decodes src with the default decoder and reports whether it
// is a usable image: nil, or an error wrapping ErrDecode.
func Check(src []byte, lim Limits) error {
	return check(src, libjpegAvailable || libwebpAvailable, lim)
}

// CheckDecoder is Check with the decoders a choice selects (see
// ResolveDecoder); an unknown choice gives an error wrapping ErrPipeline.
func CheckDecoder(src []byte, choice string, lim Limits) error {
	lj, err := parseDecoder(choice)
	if err != nil {
		return err
	}
	return check(src, lj, lim)
}

func check(src []byte, useC bool, lim Limits) error {
	o, err := openImage(src, useC, lim)
	if err != nil {
		return err
	}
	defer o.close()
	_, err = o.read(nil, true)
	return err
}

// An opened image: its plane layout is known, its pixels maybe not yet.
type opened struct {
	lay    frame // plane sizes and factors, before orientation; pix nil
	orient int
	lj     *ljDecoder // libjpeg decode in progress, or nil
	img    *frame     // already decoded (Go decoders)
}

// openImage reads the header of src, checks it against lim and prepares
// decoding, with the C libraries built in when useC.
func openImage(src []byte, useC bool, lim Limits) (*opened, error) {
	f, ok := sniff(src)
	if !ok {
		return nil, fmt.Errorf("%w: unknown format", ErrDecode)
	}
	o := &opened{orient: 1}
	if f.name == "jpeg" {
		o.orient = jpegOrientation(src)
		m, err := readJPEGMarkers(src, lim)
		if err != nil {
			return nil, err
		}
		if useC && libjpegAvailable {
			lj, lay, err := ljOpen(src, lim)
			if err != nil {
				return nil, err
			}
			o.lj, o.lay = lj, lay
			return o, nil
		}
		if src, err = goJPEG(src, m); err != nil {
			return nil, err
		}
	}
	if f.name == "webp" && useC && libwebpAvailable {
		f.decode = decodeWebPC
	}
	fr, err := decodeSafely(f, src, lim)
	if err != nil {
		return nil, err
	}
	if f.name == "jpeg" {
		fr.upsampleAsLibjpeg()
	}
	o.img, o.lay = fr, *fr
	return o, nil
}

// decodeSafely runs a format's decoder; a panic (a bug, never expected)
// becomes an error wrapping ErrDecode rather than a crash.
func decodeSafely(f format, src []byte, lim Limits) (fr *frame, err error) {
	defer func() {
		if r := recover(); r != nil {
			fr, err = nil, fmt.Errorf("%w: %s: decoder panic: %v", ErrDecode, f.name, r)
		}
	}()
	return f.decode(src, lim)
}

// size returns the upright size of the image.
func (o *opened) size() (w, h int) {
	if o.orient >= 5 {
		return o.lay.h, o.lay.w
	}
	return o.lay.w, o.lay.h
}

// partial reports whether read can stop early (rows) with the same pixels.
func (o *opened) partial() bool { return o.lj != nil && o.orient <= 1 && o.lj.raw }

// read decodes the pixels and returns the upright frame. rows, when not
// nil and partial() holds, is the number of rows of each plane needed;
// rows beyond may be left undecoded. full requires reading the whole file
// (Check).
func (o *opened) read(rows []int, full bool) (*frame, error) {
	f := o.img
	if o.lj != nil {
		if !o.partial() || full {
			rows = nil
		}
		var err error
		f, err = o.lj.read(rows, full)
		if err != nil {
			return nil, err
		}
	}
	return f.orient(o.orient), nil
}

func (o *opened) close() {
	if o.lj != nil {
		o.lj.close()
		o.lj = nil
	}
}
