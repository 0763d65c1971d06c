/* mkjpeg: writes a 4-component JPEG (CMYK or YCCK, with or without the Adobe
 * APP14 marker), which neither Pillow nor cjpeg can write, for the Pillow
 * fidelity corpus (gen.py builds and runs it).
 *
 *   mkjpeg W H cmyk|ycck adobe|noadobe QUALITY < raw-cmyk > out.jpg
 *
 * The input is W*H*4 bytes of CMYK in Adobe's convention (inverted: 255 is no
 * ink), which is what Photoshop writes and what Pillow and libjpeg readers
 * assume. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

int main(int argc, char **argv) {
	if (argc != 6) {
		fprintf(stderr, "usage: mkjpeg W H cmyk|ycck adobe|noadobe QUALITY < raw > out.jpg\n");
		return 2;
	}
	int w = atoi(argv[1]), h = atoi(argv[2]), q = atoi(argv[5]);
	size_t n = (size_t)w * h * 4;
	unsigned char *buf = malloc(n);
	if (!buf || fread(buf, 1, n, stdin) != n) {
		fprintf(stderr, "mkjpeg: short input\n");
		return 1;
	}
	struct jpeg_compress_struct c;
	struct jpeg_error_mgr em;
	c.err = jpeg_std_error(&em);
	jpeg_create_compress(&c);
	jpeg_stdio_dest(&c, stdout);
	c.image_width = w;
	c.image_height = h;
	c.input_components = 4;
	c.in_color_space = JCS_CMYK;
	jpeg_set_defaults(&c);
	jpeg_set_colorspace(&c, strcmp(argv[3], "ycck") == 0 ? JCS_YCCK : JCS_CMYK);
	c.write_Adobe_marker = strcmp(argv[4], "adobe") == 0;
	jpeg_set_quality(&c, q, TRUE);
	jpeg_start_compress(&c, TRUE);
	while (c.next_scanline < c.image_height) {
		JSAMPROW row = buf + (size_t)c.next_scanline * w * 4;
		jpeg_write_scanlines(&c, &row, 1);
	}
	jpeg_finish_compress(&c);
	jpeg_destroy_compress(&c);
	free(buf);
	return 0;
}
