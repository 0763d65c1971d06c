package augment

import "errors"

// Errors returned by the package, wrapped with %w.
var (
	// ErrDecode is wrapped by every error about a bad or unsupported image.
	ErrDecode = errors.New("augment: cannot decode image")
	// ErrTooLarge reports an image over one of the Limits (pixels,
	// progressive scans, scan work); the error names the limit. Such
	// errors also wrap ErrDecode: the file is undecodable, not unreadable.
	ErrTooLarge = errors.New("augment: image exceeds a decoder limit")
	// ErrPipeline reports invalid pipeline text or options.
	ErrPipeline = errors.New("augment: invalid pipeline")
)

// Limits bounds the work the package agrees to do for one image. The
// checks run on the header and marker structure, before any pixel buffer
// is allocated or any entropy-coded data is decoded, so they cost
// microseconds and give the same verdict with every decoder. The zero
// value means the defaults.
//
// Decoding a PNG, GIF, BMP or WebP touches each pixel a bounded number of
// times, so MaxPixels bounds its work. A progressive JPEG is different:
// every scan visits every block of its components again, and a scan that
// codes nothing (one end-of-band run) takes a few bytes, so a small file
// can cost seconds (a "scan bomb"). MaxScans and MaxScanSamples bound that.
type Limits struct {
	// MaxPixels bounds width×height; 0 means 1<<26 (64 Mpx).
	MaxPixels int64
	// MaxScans bounds the scans (SOS markers) of a JPEG; 0 means 500, the
	// default of DALI's decoders. libjpeg's progressive script has 10
	// scans; encoders rarely write more than a few dozen.
	MaxScans int
	// MaxScanSamples bounds the samples a JPEG's scans visit, summed over
	// the scans (a scan visits every sample of each of its components: a
	// baseline 4:2:0 file costs 1.5 samples a pixel, libjpeg's progressive
	// script about 6.5, or 10 at 4:4:4); 0 means 1<<31. A 64-Mpx
	// progressive 4:4:4 image passes; a 4096×4096 image with more than 128
	// full-image scans does not.
	MaxScanSamples int64
}

// effective returns l with its defaults filled in.
func (l Limits) effective() Limits {
	return Limits{MaxPixels: l.maxPixels(), MaxScans: l.maxScans(), MaxScanSamples: l.maxScanSamples()}
}

func (l Limits) maxPixels() int64 {
	if l.MaxPixels <= 0 {
		return 1 << 26
	}
	return l.MaxPixels
}

func (l Limits) maxScans() int {
	if l.MaxScans <= 0 {
		return 500
	}
	return l.MaxScans
}

func (l Limits) maxScanSamples() int64 {
	if l.MaxScanSamples <= 0 {
		return 1 << 31
	}
	return l.MaxScanSamples
}
