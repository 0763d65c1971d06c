package augment

import "errors"

// Errors returned by the package, wrapped with %w.
var (
	// ErrDecode is wrapped by every error about a bad or unsupported image.
	ErrDecode = errors.New("augment: cannot decode image")
	// ErrTooLarge reports an image over Limits.MaxPixels; such errors also
	// wrap ErrDecode.
	ErrTooLarge = errors.New("augment: image exceeds pixel limit")
	// ErrPipeline reports invalid pipeline text or options.
	ErrPipeline = errors.New("augment: invalid pipeline")
)

// Limits bounds the images the package agrees to decode.
type Limits struct {
	MaxPixels int64 // width*height; 0 means 1<<26 (64 Mpx)
}

func (l Limits) maxPixels() int64 {
	if l.MaxPixels <= 0 {
		return 1 << 26
	}
	return l.MaxPixels
}
