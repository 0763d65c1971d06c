//go:build cgo && !nolibjpeg

package augment

/*
#cgo LDFLAGS: -ljpeg
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

// ld_dec holds one decompression. It lives in C memory: libjpeg keeps
// pointers into it between calls. Every entry point below installs a
// setjmp target, so a libjpeg error longjmps back into the same C frame and
// never across Go frames.
typedef struct {
	struct jpeg_decompress_struct d; // first member: j_common_ptr casts to ld_dec*
	struct jpeg_error_mgr em;
	jmp_buf jb;
	char msg[JMSG_LENGTH_MAX];
	int created;
} ld_dec;

static void ld_error_exit(j_common_ptr c) {
	ld_dec *h = (ld_dec *)c;
	(*c->err->format_message)(c, h->msg);
	longjmp(h->jb, 1);
}

// Warnings about corrupt entropy-coded data (which libjpeg would paper
// over with gray) are errors; harmless ones (unknown JFIF revision, bytes
// between markers, odd progression scripts or ICC markers) are not.
static void ld_emit_message(j_common_ptr c, int level) {
	int code = c->err->msg_code;
	if (level < 0 && (code == JWRN_ARITH_BAD_CODE || code == JWRN_HIT_MARKER || code == JWRN_HUFF_BAD_CODE ||
	                  code == JWRN_JPEG_EOF || code == JWRN_MUST_RESYNC || code == JWRN_NOT_SEQUENTIAL)) {
		ld_dec *h = (ld_dec *)c;
		(*c->err->format_message)(c, h->msg);
		longjmp(h->jb, 1);
	}
}

static void ld_output_message(j_common_ptr c) { (void)c; }

static ld_dec *ld_new(void) { return (ld_dec *)calloc(1, sizeof(ld_dec)); }

static void ld_free(ld_dec *h) {
	if (h->created) jpeg_destroy_decompress(&h->d);
	free(h);
}

// ld_open reads the header; buf must stay valid (pinned) until ld_free.
static int ld_open(ld_dec *h, const unsigned char *buf, unsigned long n) {
	h->d.err = jpeg_std_error(&h->em);
	h->em.error_exit = ld_error_exit;
	h->em.emit_message = ld_emit_message;
	h->em.output_message = ld_output_message;
	if (setjmp(h->jb)) return -1;
	jpeg_create_decompress(&h->d);
	h->created = 1;
	jpeg_mem_src(&h->d, buf, n);
	jpeg_read_header(&h->d, TRUE);
	return 0;
}

static int ld_start(ld_dec *h, int raw, int out) {
	if (setjmp(h->jb)) return -1;
	h->d.raw_data_out = raw ? TRUE : FALSE;
	h->d.out_color_space = (J_COLOR_SPACE)out;
	h->d.dct_method = JDCT_ISLOW;
	h->d.do_fancy_upsampling = TRUE;
	jpeg_start_decompress(&h->d);
	return 0;
}

// ld_read_raw decodes iMCU rows until `upto` of them are done. Plane c's
// row r is at base[c] + r*stride[c].
static int ld_read_raw(ld_dec *h, unsigned char *p0, int s0, unsigned char *p1, int s1,
                       unsigned char *p2, int s2, int upto) {
	JSAMPROW rows[3][4 * DCTSIZE];
	JSAMPARRAY arr[3] = {rows[0], rows[1], rows[2]};
	unsigned char *base[3] = {p0, p1, p2};
	int stride[3] = {s0, s1, s2};
	int nc = h->d.num_components, lines = h->d.max_v_samp_factor * DCTSIZE;
	if (setjmp(h->jb)) return -1;
	for (;;) {
		int k = (int)(h->d.output_scanline / lines);
		if (k >= upto || h->d.output_scanline >= h->d.output_height) break;
		for (int c = 0; c < nc; c++) {
			int n = h->d.comp_info[c].v_samp_factor * DCTSIZE;
			for (int i = 0; i < n; i++) rows[c][i] = base[c] + (size_t)(k * n + i) * (size_t)stride[c];
		}
		if (jpeg_read_raw_data(&h->d, arr, (JDIMENSION)lines) == 0) {
			strcpy(h->msg, "suspended: truncated input");
			return -1;
		}
	}
	return 0;
}

// ld_read_lines decodes every scanline into buf (stride bytes a row).
static int ld_read_lines(ld_dec *h, unsigned char *buf, int stride) {
	if (setjmp(h->jb)) return -1;
	while (h->d.output_scanline < h->d.output_height) {
		JSAMPROW row = buf + (size_t)h->d.output_scanline * (size_t)stride;
		if (jpeg_read_scanlines(&h->d, &row, 1) != 1) {
			strcpy(h->msg, "suspended: truncated input");
			return -1;
		}
	}
	return 0;
}

static int ld_finish(ld_dec *h) {
	if (setjmp(h->jb)) return -1;
	jpeg_finish_decompress(&h->d);
	return 0;
}

static int ld_comp(ld_dec *h, int c, int what) {
	jpeg_component_info *ci = &h->d.comp_info[c];
	switch (what) {
	case 0: return ci->h_samp_factor;
	case 1: return ci->v_samp_factor;
	case 2: return (int)ci->downsampled_width;
	case 3: return (int)ci->downsampled_height;
	}
	return 0;
}

static int ld_cs(ld_dec *h) { return (int)h->d.jpeg_color_space; }
*/
import "C"

import (
	"fmt"
	"runtime"
	"strconv"
	"unsafe"
)

const libjpegAvailable = true

var libjpegName = "libjpeg-turbo " + turboVersion(C.LIBJPEG_TURBO_VERSION_NUMBER)

func turboVersion(n int) string {
	return strconv.Itoa(n/1000000) + "." + strconv.Itoa(n/1000%1000) + "." + strconv.Itoa(n%1000)
}

type ljMode uint8

const (
	ljRaw   ljMode = iota // native planes
	ljCMYK                // interleaved CMYK lines
	ljRGBLn               // interleaved RGB lines (anything else)
)

// An ljDecoder is one libjpeg-turbo decompression in progress.
type ljDecoder struct {
	h      *C.ld_dec
	pin    runtime.Pinner
	raw    bool
	mode   ljMode
	lay    frame
	imcu   int    // rows of the full image in one iMCU row
	total  int    // iMCU rows in the image
	vs     [3]int // rows of plane c in one iMCU row
	bufs   [3][]byte
	stride [3]int
	done   bool
}

func (d *ljDecoder) fail(what string) error {
	return fmt.Errorf("%w: jpeg: %s: %s", ErrDecode, what, C.GoString(&d.h.msg[0]))
}

// ljOpen reads the header of a JPEG, checks its size and starts decoding.
func ljOpen(src []byte, lim Limits) (*ljDecoder, frame, error) {
	d := &ljDecoder{h: C.ld_new()}
	if d.h == nil {
		return nil, frame{}, fmt.Errorf("%w: jpeg: out of memory", ErrDecode)
	}
	d.pin.Pin(&src[0])
	if C.ld_open(d.h, (*C.uchar)(unsafe.Pointer(&src[0])), C.ulong(len(src))) != 0 {
		err := d.fail("header")
		d.close()
		return nil, frame{}, err
	}
	w, h := int(d.h.d.image_width), int(d.h.d.image_height)
	if err := checkPixels(w, h, lim); err != nil {
		d.close()
		return nil, frame{}, err
	}
	nc := int(d.h.d.num_components)
	cs := int(C.ld_cs(d.h))
	out := C.JCS_RGB
	d.mode = ljRGBLn
	model := modelRGB
	switch {
	case cs == C.JCS_GRAYSCALE && nc == 1:
		d.mode, model, out = ljRaw, modelGray, C.JCS_GRAYSCALE
	case cs == C.JCS_YCbCr && nc == 3:
		d.mode, model, out = ljRaw, modelYCbCr, C.JCS_YCbCr
	case cs == C.JCS_RGB && nc == 3:
		d.mode, model, out = ljRaw, modelRGB, C.JCS_RGB
	case (cs == C.JCS_CMYK || cs == C.JCS_YCCK) && nc == 4:
		d.mode, out = ljCMYK, C.JCS_CMYK
	}
	maxH, maxV := int(d.h.d.max_h_samp_factor), int(d.h.d.max_v_samp_factor)
	if d.mode == ljRaw {
		// Raw planes when the resampler reproduces libjpeg's upsampling
		// of every plane (its triangle filter); otherwise libjpeg
		// upsamples (replicating samples) and converts to RGB itself.
		for c := range nc {
			hs, vs := int(C.ld_comp(d.h, C.int(c), 0)), int(C.ld_comp(d.h, C.int(c), 1))
			if hs <= 0 || vs <= 0 || maxH%hs != 0 || maxV%vs != 0 || (c == 0 && (hs != maxH || vs != maxV)) ||
				!fancyUpsampled(maxH/hs, maxV/vs, int(C.ld_comp(d.h, C.int(c), 2))) {
				d.mode, model, out = ljRGBLn, modelRGB, C.JCS_RGB
				break
			}
		}
	}
	d.raw = d.mode == ljRaw
	if C.ld_start(d.h, boolInt(d.raw), C.int(out)) != 0 {
		err := d.fail("start")
		d.close()
		return nil, frame{}, err
	}
	d.lay = frame{model: model, w: w, h: h, n: 3}
	if model == modelGray {
		d.lay.n = 1
	}
	if !d.raw {
		for c := range 3 {
			d.lay.p[c] = plane{w: w, h: h, fx: 1, fy: 1, stride: w}
		}
		return d, d.lay, nil
	}
	d.imcu = maxV * C.DCTSIZE
	d.total = (h + d.imcu - 1) / d.imcu
	mcuCols := (w + maxH*C.DCTSIZE - 1) / (maxH * C.DCTSIZE)
	for c := range nc {
		hs, vs := int(C.ld_comp(d.h, C.int(c), 0)), int(C.ld_comp(d.h, C.int(c), 1))
		d.vs[c] = vs * C.DCTSIZE
		d.stride[c] = mcuCols * hs * C.DCTSIZE
		d.lay.p[c] = plane{
			w: int(C.ld_comp(d.h, C.int(c), 2)), h: int(C.ld_comp(d.h, C.int(c), 3)),
			fx: maxH / hs, fy: maxV / vs, stride: d.stride[c],
		}
	}
	return d, d.lay, nil
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// read decodes the image. rows (raw mode only) is the number of rows of
// each plane needed; nil means all. full also reads to the end of the file.
func (d *ljDecoder) read(rows []int, full bool) (*frame, error) {
	if d.done {
		return nil, fmt.Errorf("%w: jpeg: read twice", ErrDecode)
	}
	d.done = true
	f := d.lay
	if d.raw {
		upto := d.total
		if rows != nil {
			upto = 0
			for c := range f.n {
				if k := (rows[c] + d.vs[c] - 1) / d.vs[c]; k > upto {
					upto = k
				}
			}
			upto = min(upto, d.total)
		}
		var ptr [3]*C.uchar
		for c := range f.n {
			d.bufs[c] = getBuf(d.stride[c] * d.total * d.vs[c])
			ptr[c] = (*C.uchar)(unsafe.Pointer(&d.bufs[c][0]))
			f.p[c].pix = d.bufs[c]
		}
		if C.ld_read_raw(d.h, ptr[0], C.int(d.stride[0]), ptr[1], C.int(d.stride[1]), ptr[2], C.int(d.stride[2]), C.int(upto)) != 0 {
			return nil, d.fail("decode")
		}
	} else {
		nc := 3
		if d.mode == ljCMYK {
			nc = 4
		}
		buf := make([]byte, f.w*f.h*nc)
		if C.ld_read_lines(d.h, (*C.uchar)(unsafe.Pointer(&buf[0])), C.int(f.w*nc)) != 0 {
			return nil, d.fail("decode")
		}
		out := newRGBFrame(f.w, f.h)
		r, g, b := out.p[0].pix, out.p[1].pix, out.p[2].pix
		if d.mode == ljCMYK {
			// Stored inverted (Adobe's convention), marker or not: Pillow
			// ("CMYK;I"), browsers and image/jpeg read every CMYK JPEG so.
			for i := range r {
				q := buf[4*i : 4*i+4]
				r[i], g[i], b[i] = cmykToRGB(^q[0], ^q[1], ^q[2], ^q[3])
			}
		} else {
			for i := range r {
				r[i], g[i], b[i] = buf[3*i], buf[3*i+1], buf[3*i+2]
			}
		}
		f = *out
	}
	if full && C.ld_finish(d.h) != 0 {
		return nil, d.fail("finish")
	}
	return &f, nil
}

func (d *ljDecoder) close() {
	for c, b := range d.bufs {
		if b != nil {
			putBuf(b)
			d.bufs[c] = nil
		}
	}
	if d.h != nil {
		C.ld_free(d.h)
		d.h = nil
	}
	d.pin.Unpin()
}
