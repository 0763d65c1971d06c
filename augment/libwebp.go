//go:build cgo && !nolibwebp

package augment

/*
#cgo LDFLAGS: -lwebpdemux -lwebp
#include <stdint.h>
#include <stdlib.h>
#include <webp/decode.h>
#include <webp/demux.h>

// lw_size reads the canvas size of a WebP file; 0, or libwebp's status code.
static int lw_size(const uint8_t *b, size_t n, int *w, int *h) {
	WebPBitstreamFeatures f;
	VP8StatusCode s = WebPGetFeatures(b, n, &f);
	if (s != VP8_STATUS_OK) return (int)s;
	*w = f.width;
	*h = f.height;
	return 0;
}

// lw_first_frame decodes the first frame of a WebP file, still or animated,
// with WebPAnimDecoder, as Pillow does: non-premultiplied RGBA on a w×h
// canvas, zero where the frame does not cover it. It writes the R, G and B
// planes (w*h bytes each). Returns 0, or -1 when libwebp refuses the file.
// Nothing is kept past the call.
static int lw_first_frame(const uint8_t *b, size_t n, int w, int h, uint8_t *r, uint8_t *g, uint8_t *bl) {
	WebPAnimDecoderOptions o;
	if (!WebPAnimDecoderOptionsInit(&o)) return -1;
	o.color_mode = MODE_RGBA;
	o.use_threads = 0;
	WebPData d = {b, n};
	WebPAnimDecoder *dec = WebPAnimDecoderNew(&d, &o);
	if (dec == NULL) return -1;
	WebPAnimInfo info;
	uint8_t *buf = NULL;
	int ts = 0;
	int ok = WebPAnimDecoderGetInfo(dec, &info) && (int)info.canvas_width == w && (int)info.canvas_height == h &&
	         WebPAnimDecoderGetNext(dec, &buf, &ts);
	if (ok) {
		size_t np = (size_t)w * (size_t)h;
		for (size_t i = 0; i < np; i++) {
			r[i] = buf[4 * i];
			g[i] = buf[4 * i + 1];
			bl[i] = buf[4 * i + 2];
		}
	}
	WebPAnimDecoderDelete(dec);
	return ok ? 0 : -1;
}

static int lw_version(void) { return WebPGetDecoderVersion(); }
*/
import "C"

import (
	"strconv"
	"unsafe"
)

const libwebpAvailable = true

var libwebpName = func() string {
	v := int(C.lw_version())
	return "libwebp " + strconv.Itoa(v>>16) + "." + strconv.Itoa(v>>8&255) + "." + strconv.Itoa(v&255)
}()

// decodeWebPC decodes the first frame of a WebP file with libwebp, after
// checking its canvas against lim.
func decodeWebPC(src []byte, lim Limits) (*frame, error) {
	if len(src) == 0 {
		return nil, webpError("empty file")
	}
	p := (*C.uint8_t)(unsafe.Pointer(&src[0]))
	var w, h C.int
	if s := C.lw_size(p, C.size_t(len(src)), &w, &h); s != 0 {
		return nil, webpError("libwebp refuses the header (status %d)", int(s))
	}
	if err := checkPixels(int(w), int(h), lim); err != nil {
		return nil, err
	}
	f := newRGBFrame(int(w), int(h))
	pl := func(c int) *C.uint8_t { return (*C.uint8_t)(unsafe.Pointer(&f.p[c].pix[0])) }
	if C.lw_first_frame(p, C.size_t(len(src)), w, h, pl(0), pl(1), pl(2)) != 0 {
		return nil, webpError("libwebp cannot decode the first frame")
	}
	return f, nil
}
