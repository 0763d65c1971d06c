// Package augment decodes images and applies deterministic, torchvision-style
// augmentations to them, producing fixed-size rows of 8-bit RGB (H×W×3) or,
// after normalize, float32 CHW tensors.
//
// # Decoding
//
// Decoded pixels are those of Pillow's Image.open(f).convert("RGB"), what
// torchvision's ImageFolder feeds a model, within a mean absolute difference
// under 1 level and no sample more than 4 levels off (SPEC §5; the corpus in
// testdata/pillow checks every format and variant against Pillow's own
// output). JPEG goes through libjpeg-turbo (cgo) and WebP through libwebp
// (cgo, the first frame as WebPAnimDecoder gives it) unless the package is
// built without cgo or with the nolibjpeg / nolibwebp tags, or the decoder
// choice is "go"; then through image/jpeg and x/image/webp, with the
// corrections Pillow's pixels need (CMYK without an Adobe marker,
// libjpeg's chroma replication, limited-range VP8, transparent colours,
// animated first frames). PNG goes through image/png; GIF and BMP through
// this package's decoders, which read what Pillow reads (gif.go, bmp.go).
// Every input becomes 8-bit RGB: alpha is dropped (transparent pixels keep
// their colour), animated files give their first frame, 16-bit samples
// their high byte (Pillow clamps 16-bit gray to 255: the one deliberate
// deviation), and the JPEG EXIF orientation is applied. The image size is checked against
// Limits.MaxPixels before any pixel buffer is allocated, and a JPEG's scans
// against Limits.MaxScans and Limits.MaxScanSamples before any of them is
// decoded (a progressive "scan bomb" of a few kilobytes can otherwise cost
// seconds). A bad image never panics: it returns an error wrapping ErrDecode.
//
// JPEGs are decoded to their native Y/Cb/Cr planes (no chroma upsampling,
// no colour conversion); the resampler reads each plane at its own
// resolution and only the final H×W output is converted to RGB. With
// libjpeg-turbo, decoding stops after the last JPEG row the output needs
// (region decoding of rows); the pixels are the same as after a full decode.
//
// # Measurements (photoset --grain 8, 2 shared cores, CPU time of one thread)
//
// Decode paths for random_resized_crop crops (testdata/regionbench.c), in
// images per CPU second: raw planes, full 1000; raw planes stopping after
// the crop's last rows 1180 (kept: same bytes); YCbCr scanlines
// (upsampled), full 850; scanlines with jpeg_crop_scanline and
// jpeg_skip_scanlines 1160. Cropping and skipping work only in scanline
// mode (jpeg_skip_scanlines rejects raw output) and then hand the resampler
// full-resolution chroma, so they buy nothing over stopping early in raw
// mode. DCT scaling (scale_denom 2, 4, 8) is not used: its pixels are never
// the bytes of the full-resolution path, and only 1.2% of the photoset's
// random 224 crops are 448 pixels or more on both sides, the least that a
// 1/2 scale needs not to upscale. The whole imagenet-train sample
// (BenchmarkPipeline, libjpeg-turbo, one goroutine) runs at about 620
// images per CPU second (680/s wall) with region decoding and 600 (630/s)
// without; the fused resampler (BenchmarkOps/random_resized_crop, with the
// YCbCr to RGB conversion) at about 2200, against 600 for imaging's Linear
// resize of the same crops from RGB (BenchmarkResampleReference).
//
// # Pipelines
//
// A pipeline is text: ops joined by '|', each op `name(arg=value,...)`.
// A value is a number, a range `a:b`, or a list `a,b,c`: a comma followed by
// an item without '=' continues the previous argument's list. Arguments may
// be given in any order and omitted when they have a default; String prints
// the canonical form, every argument in a fixed order, floats in their
// shortest form. Ops (see Ops):
//
//	random_resized_crop(size=H[,W],scale=0.08:1,ratio=0.75:1.3333)
//	resize(size=N)                 shorter side to N, aspect kept
//	resize(size=H,W)               exactly H×W
//	center_crop(size=H[,W])        zero padding when larger than the image
//	hflip(p=0.5)
//	color_jitter(brightness=0,contrast=0,saturation=0)
//	normalize(mean=0.485,0.456,0.406,std=0.229,0.224,0.225)  float32 CHW; must be last
//
// Presets: imagenet-train = random_resized_crop(size=224)|hflip(p=0.5),
// imagenet-val = resize(size=256)|center_crop(size=224). A pipeline must end
// in a fixed shape (random_resized_crop, center_crop or resize(size=H,W)).
//
// The geometric ops (crops, resizes, flips) are composed into one source
// rectangle and resampled once, straight from the decoded planes, with an
// antialiased triangle (bilinear) filter whose support grows with the
// downscale factor, like PIL's. Colour ops then run on the output pixels.
//
// # Determinism
//
// Every random draw of a sample comes from the *rand.Rand passed to Apply,
// normally SampleRand(seed, epoch, index). Given the same bytes, pipeline and
// generator state, the output bytes are the same whatever the goroutine,
// GOMAXPROCS or decoding path (full or region), with or without the AVX2
// kernels (package augment/internal/simd), and whatever GOAMD64 level
// compiled it: the products that feed a sum are rounded explicitly
// (float64(x*y)), which keeps the compiler from fusing them into
// multiply-adds. Pipeline.Fingerprint hashes the canonical text, each op's
// implementation version and the decoder name.
package augment
