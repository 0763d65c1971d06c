#!/usr/bin/env python3
"""Generates the Pillow fidelity corpus of augment's decoders.

For every odd kind of image a real dataset holds (JPEG, PNG, WebP, GIF, BMP
variants), this writes a small input file and what Pillow's
``Image.open(f).convert("RGB")`` gives for it (``ImageOps.exif_transpose``
first for JPEGs: the SPEC applies the EXIF orientation), as an 8-bit RGB PNG
under expected/. corpus.json lists them with the check the Go test makes, and
the library versions that made them. The Go tests (augment/pillow_test.go)
need no Python.

Inputs come from Pillow where Pillow can write them; the rest are written
here by hand (PNG bit depths and interlacing, GIF LZW code sizes and frame
layouts, every BMP header and compression, animated WebP frame offsets),
with cjpeg from libjpeg-turbo-progs (arithmetic coding, restart markers,
4:1:1/4:4:0/4:1:0 sampling, RGB JPEG), or with mkjpeg.c against libjpeg-turbo
(CMYK and YCCK with and without the Adobe marker).

Run from anywhere (Debian: python3-pil, python3-numpy, libjpeg-turbo-progs,
gcc, libjpeg62-turbo-dev):  python3 augment/testdata/pillow/gen.py [OUTDIR]
It writes next to itself, or into OUTDIR (CI regenerates into a temporary
directory and compares). The output is deterministic for given library
versions.
"""

import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import warnings
import zlib

import numpy as np
import PIL
from PIL import Image, ImageOps, features

SRC = os.path.dirname(os.path.abspath(__file__))
HERE = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else SRC
EXP = os.path.join(HERE, "expected")
TMP = tempfile.mkdtemp(prefix="pillow-corpus-")
entries = []


def natural(w, h, seed, alpha=False):
    """A deterministic photo-like RGB(A) image: gradients, soft blobs, hard
    edges and mild noise, as uint8 H×W×3 (or 4)."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([x / max(w, 1) * 200, y / max(h, 1) * 180, np.full_like(x, 90.0)], -1)
    for _ in range(5):
        cx, cy = r.random() * w, r.random() * h
        rad = (0.15 + 0.3 * r.random()) * max(min(w, h), 2)
        col = r.random(3) * 255
        a = np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / rad**2))[..., None]
        img = img * (1 - a) + col * a
    stripes = ((x.astype(int) // 7 + y.astype(int) // 5) % 4 == 0)
    img[stripes] = img[stripes][:, [1, 0, 2]]
    img += (r.random(img.shape) - 0.5) * 12
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    if alpha:
        a = (np.clip(x / max(w - 1, 1) * 300 - 40, 0, 255)).astype(np.uint8)
        a[: h // 3, : w // 3] = 0  # a fully transparent corner with colour under it
        img = np.concatenate([img, a[..., None]], -1)
    return img


def path(name):
    return os.path.join(HERE, name)


def add(name, data, about, check="pillow", go="ok", expected=None):
    """Writes input file `name` and Pillow's RGB output for it.

    check: "pillow" (compare with Pillow's pixels), "highbyte" (the SPEC's
    16-bit deviation: compare with each sample's high byte, given as
    `expected`), "reject" (the stated policy refuses the file).
    go: "ok"; "refuse" where the pure-Go decoders cannot decode it, or
    "approx" where they decode it outside the tolerance (the README says
    which and why)."""
    with open(path(name), "wb") as f:
        f.write(data)
    e = {"file": name, "about": about, "check": check, "go": go}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        im = Image.open(path(name))
        if im.format == "JPEG":
            im = ImageOps.exif_transpose(im)
        rgb = im.convert("RGB")
    pil = np.asarray(rgb)
    e["pillow"] = "expected/" + name + ".png"
    Image.fromarray(pil, "RGB").save(os.path.join(EXP, name + ".png"), optimize=True)
    if expected is not None:
        e["expected"] = "expected/" + name + ".highbyte.png"
        Image.fromarray(expected, "RGB").save(os.path.join(EXP, name + ".highbyte.png"), optimize=True)
    entries.append(e)


def pil_bytes(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def rgb_image(w, h, seed):
    return Image.fromarray(natural(w, h, seed), "RGB")


# ---------------------------------------------------------------- JPEG

def run(args, stdin=None):
    return subprocess.run(args, input=stdin, stdout=subprocess.PIPE, check=True).stdout


def cjpeg(im, *opts):
    ppm = pil_bytes(im, "PPM")
    return run(["cjpeg", *opts], ppm)


def strip_segment(jpg, marker):
    """Removes every segment with the given marker (e.g. 0xEE, APP14)."""
    out, i = bytearray(jpg[:2]), 2
    while i + 4 <= len(jpg) and jpg[i] == 0xFF and jpg[i + 1] != 0xDA:
        n = struct.unpack(">H", jpg[i + 2:i + 4])[0]
        if jpg[i + 1] != marker:
            out += jpg[i:i + 2 + n]
        i += 2 + n
    return bytes(out + jpg[i:])


def with_exif_orientation(jpg, o):
    """Inserts an EXIF APP1 segment (little-endian TIFF, IFD0 with one
    Orientation tag) after SOI."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHII", 0x0112, 3, 1, o) + struct.pack("<I", 0)
    seg = b"Exif\x00\x00" + tiff
    return jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(seg) + 2) + seg + jpg[2:]


def jpegs():
    base = rgb_image(48, 40, 1)
    odd = rgb_image(33, 17, 2)
    add("jpeg-baseline-420.jpg", pil_bytes(base, "JPEG", quality=90, subsampling=2), "baseline, 4:2:0 (Pillow)")
    add("jpeg-baseline-422.jpg", pil_bytes(base, "JPEG", quality=90, subsampling=1), "baseline, 4:2:2 (Pillow)")
    add("jpeg-baseline-444.jpg", pil_bytes(base, "JPEG", quality=90, subsampling=0), "baseline, 4:4:4 (Pillow)")
    add("jpeg-odd-420.jpg", pil_bytes(odd, "JPEG", quality=85, subsampling=2), "33×17, 4:2:0: partial MCUs on both edges")
    add("jpeg-odd-422.jpg", pil_bytes(odd, "JPEG", quality=85, subsampling=1), "33×17, 4:2:2")
    add("jpeg-progressive-420.jpg", pil_bytes(base, "JPEG", quality=90, progressive=True), "progressive, 4:2:0 (Pillow)")
    add("jpeg-progressive-odd.jpg", pil_bytes(odd, "JPEG", quality=75, progressive=True, subsampling=0), "progressive, 4:4:4, 33×17")
    add("jpeg-gray.jpg", pil_bytes(base.convert("L"), "JPEG", quality=90), "grayscale (Pillow)")
    add("jpeg-gray-progressive.jpg", pil_bytes(odd.convert("L"), "JPEG", quality=80, progressive=True), "grayscale progressive")
    add("jpeg-411.jpg", cjpeg(base, "-quality", "90", "-sample", "4x1"), "4:1:1 (cjpeg -sample 4x1): libjpeg replicates chroma")
    add("jpeg-440.jpg", cjpeg(base, "-quality", "90", "-sample", "1x2"), "4:4:0 (cjpeg -sample 1x2)")
    add("jpeg-410.jpg", cjpeg(odd, "-quality", "90", "-sample", "4x2"), "4:1:0 (cjpeg -sample 4x2), 33×17")
    add("jpeg-restart.jpg", cjpeg(base, "-quality", "85", "-restart", "1B"), "restart marker after every MCU (cjpeg -restart 1B)")
    add("jpeg-restart-rows.jpg", cjpeg(odd, "-quality", "85", "-restart", "1", "-progressive"),
        "progressive 4:2:0 with a restart interval of one MCU row", go="refuse")
    add("jpeg-rgb.jpg", cjpeg(base, "-quality", "90", "-rgb"), "RGB colour space, no transform (cjpeg -rgb)")
    add("jpeg-arithmetic.jpg", cjpeg(base, "-quality", "90", "-arithmetic"), "arithmetic coding (cjpeg -arithmetic)",
        go="refuse")
    add("jpeg-arithmetic-progressive.jpg", cjpeg(odd, "-quality", "90", "-arithmetic", "-progressive"),
        "progressive arithmetic coding", go="refuse")
    # Tiny images: libjpeg upsamples chroma by replication when a 2× plane
    # is at most 2 samples wide (jdsample.c), so a 4-pixel-wide 4:2:0 image
    # differs from a bilinear upsampling by tens of levels.
    for w, h in [(4, 4), (4, 9), (3, 3), (2, 2), (1, 1), (5, 4), (1, 16)]:
        add(f"jpeg-tiny-{w}x{h}-420.jpg", pil_bytes(rgb_image(w, h, 10 + w * h), "JPEG", quality=95, subsampling=2),
            f"{w}×{h}, 4:2:0")
    add("jpeg-tiny-4x4-422.jpg", pil_bytes(rgb_image(4, 4, 7), "JPEG", quality=95, subsampling=1), "4×4, 4:2:2")
    # EXIF orientations 1-8 on an asymmetric image.
    src = pil_bytes(rgb_image(24, 16, 3), "JPEG", quality=92)
    for o in range(1, 9):
        add(f"jpeg-exif-{o}.jpg", with_exif_orientation(src, o), f"EXIF orientation {o} (compared after exif_transpose)")
    # CMYK and YCCK, with and without the Adobe marker. Pillow always reads a
    # 4-component JPEG as Adobe-inverted CMYK (JpegImagePlugin: "CMYK;I").
    cmyk = Image.fromarray(natural(40, 32, 4), "RGB").convert("CMYK")
    add("jpeg-cmyk-adobe.jpg", pil_bytes(cmyk, "JPEG", quality=90), "CMYK with Adobe APP14 (Pillow)")
    add("jpeg-cmyk-noadobe.jpg", strip_segment(pil_bytes(cmyk, "JPEG", quality=90), 0xEE),
        "CMYK without the Adobe marker (Pillow's, APP14 stripped)")
    raw = 255 - np.asarray(cmyk)  # Adobe convention: inverted
    mk = os.path.join(TMP, "mkjpeg")
    subprocess.run(["gcc", "-O2", "-o", mk, os.path.join(SRC, "mkjpeg.c"), "-ljpeg"], check=True)
    for cs in ["ycck", "cmyk"]:
        for adobe in ["adobe", "noadobe"]:
            if cs == "cmyk" and adobe == "adobe":
                continue  # Pillow's above
            data = run([mk, "40", "32", cs, adobe, "90"], raw.tobytes())
            # YCCK has subsampled chroma; image/jpeg upsamples the planes of
            # a 4-component file by replication.
            add(f"jpeg-{cs}-{adobe}-mk.jpg", data, f"{cs.upper()} {'with' if adobe == 'adobe' else 'without'} Adobe APP14 (mkjpeg.c)",
                go="approx" if cs == "ycck" else "ok")
    # Extraneous bytes between the scan and EOI: libjpeg warns
    # (JWRN_EXTRANEOUS_DATA) and decodes; so do loaderd's decoders.
    j = pil_bytes(base, "JPEG", quality=90)
    add("jpeg-extraneous.jpg", j[:-2] + b"\x00garbage\x01\x02" + j[-2:], "bytes between the scan and EOI")
    # Corrupt entropy-coded data: the scan cut in the middle and EOI
    # appended. Pillow decodes it with a warning ("premature end of data
    # segment", the rest gray); loaderd's policy refuses it.
    add("jpeg-corrupt-truncated-scan.jpg", j[:len(j) // 2] + b"\xff\xd9", "entropy data cut mid-scan, then EOI",
        check="reject")
    bad = bytearray(j)
    k = len(j) // 2
    bad[k:k + 6] = b"\xff\xd3\xff\xd5\x12\x34"  # stray restart markers
    add("jpeg-corrupt-markers.jpg", bytes(bad), "stray restart markers inside the entropy data", check="reject")


# ---------------------------------------------------------------- PNG

def png_chunk(t, data):
    c = t + data
    return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)


def pack_row(samples, depth):
    """Packs one row of integer samples at `depth` bits (1..16), MSB first."""
    if depth == 8:
        return bytes(np.asarray(samples, np.uint8))
    if depth == 16:
        return np.asarray(samples, ">u2").tobytes()
    out, acc, n = bytearray(), 0, 0
    for v in samples:
        acc = acc << depth | int(v)
        n += depth
        if n == 8:
            out.append(acc)
            acc, n = 0, 0
    if n:
        out.append(acc << (8 - n))
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png(arr, ctype, depth, interlace=False, plte=None, trns=None):
    """A PNG of arr (H×W×C integer samples) by hand, every colour type and
    bit depth, optionally Adam7-interlaced; filter types rotate over rows."""
    h, w = arr.shape[:2]
    flat = arr.reshape(h, w, -1)
    raw = bytearray()
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    bpp = max(1, flat.shape[2] * depth // 8)
    for x0, y0, dx, dy in passes:
        sub = flat[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        prev = None
        for i, row in enumerate(sub):
            line = pack_row(row.reshape(-1), depth)
            ft = i % 3  # none, sub, up
            if ft == 1:
                b = bytearray(line)
                for k in range(len(b) - 1, bpp - 1, -1):
                    b[k] = (b[k] - b[k - bpp]) & 255
                line = bytes(b)
            elif ft == 2 and prev is not None:
                line = bytes((a - c) & 255 for a, c in zip(line, prev))
            elif ft == 2:
                ft = 0
            raw.append(ft)
            raw += line
            prev = pack_row(row.reshape(-1), depth)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlace)))
    if plte is not None:
        out += png_chunk(b"PLTE", bytes(np.asarray(plte, np.uint8).reshape(-1)))
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    out += png_chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + png_chunk(b"IEND", b"")
    return out


def pngs():
    w, h = 37, 29
    rgb = natural(w, h, 5)
    rgba = natural(w, h, 6, alpha=True)
    gray = rgb[..., 1]
    add("png-rgb8.png", png(rgb, 2, 8), "RGB 8-bit")
    add("png-rgba8.png", png(rgba, 6, 8), "RGBA 8-bit: transparent pixels keep their colour")
    add("png-gray8.png", png(gray, 0, 8), "gray 8-bit")
    add("png-la8.png", png(np.stack([gray, rgba[..., 3]], -1), 4, 8), "gray+alpha (LA) 8-bit")
    for d in (1, 2, 4):
        add(f"png-gray{d}.png", png(gray >> (8 - d), 0, d), f"gray {d}-bit")
    pal = natural(16, 16, 7).reshape(-1, 3)[:256]
    idx = (rgb[..., 0].astype(int) * 7 + rgb[..., 1]) % 256
    add("png-palette8.png", png(idx, 3, 8, plte=pal), "palette 8-bit")
    trns = bytes(range(0, 256, 3))[:200]  # alpha for the first 200 entries
    add("png-palette8-trns.png", png(idx, 3, 8, plte=pal, trns=trns), "palette with transparency (tRNS)")
    add("png-palette4-trns.png", png(idx % 16, 3, 4, plte=pal[:16], trns=b"\x00\x80"), "4-bit palette, tRNS")
    add("png-palette1.png", png(idx % 2, 3, 1, plte=[[200, 30, 60], [10, 220, 90]]), "1-bit palette")
    add("png-gray8-trns.png", png(gray, 0, 8, trns=struct.pack(">H", int(gray[0, 0]))), "gray with a transparent level (tRNS)")
    add("png-rgb8-trns.png", png(rgb, 2, 8, trns=struct.pack(">HHH", *map(int, rgb[0, 0]))), "RGB with a transparent colour")
    add("png-rgb8-interlaced.png", png(rgb, 2, 8, interlace=True), "Adam7-interlaced RGB")
    add("png-palette2-interlaced.png", png(idx % 4, 3, 2, interlace=True, plte=pal[:4]), "Adam7-interlaced 2-bit palette")
    add("png-gray1-interlaced.png", png(gray >> 7, 0, 1, interlace=True), "Adam7-interlaced 1-bit gray")
    r = np.random.default_rng(8)
    lo = r.integers(0, 256, (h, w, 4))
    rgb16 = rgb.astype(np.int64) * 256 + lo[..., :3]
    add("png-rgb16.png", png(rgb16, 2, 16), "RGB 16-bit (Pillow keeps the high byte)")
    rgba16 = rgba.astype(np.int64) * 256 + lo
    add("png-rgba16.png", png(rgba16, 6, 16), "RGBA 16-bit")
    add("png-la16.png", png(rgba16[..., [1, 3]], 4, 16), "LA 16-bit")
    add("png-rgb16-interlaced.png", png(rgb16, 2, 16, interlace=True), "Adam7-interlaced RGB 16-bit")
    g16 = rgb16[..., 1]
    hb = np.repeat((g16 >> 8).astype(np.uint8)[..., None], 3, -1)
    add("png-gray16.png", png(g16, 0, 16), "gray 16-bit: Pillow clamps to 255 (mode I;16), loaderd keeps the high byte",
        check="highbyte", expected=hb)


# ---------------------------------------------------------------- GIF

def lzw_literals(indices, min_size):
    """GIF LZW data that codes every pixel as a literal, with a clear code
    before the decoder's table fills: valid for any minimum code size 2..11,
    including sizes over 8 that Go's compress/lzw refuses."""
    clear, eoi = 1 << min_size, (1 << min_size) + 1
    out, acc, nacc = bytearray(), 0, 0

    def emit(code, width):
        nonlocal acc, nacc
        acc |= code << nacc
        nacc += width
        while nacc >= 8:
            out.append(acc & 255)
            acc >>= 8
            nacc -= 8

    width, nxt, first = min_size + 1, eoi + 1, True
    emit(clear, width)
    for v in indices:
        if nxt >= 4095:
            emit(clear, width)
            width, nxt, first = min_size + 1, eoi + 1, True
        emit(int(v), width)
        if first:
            first = False
            continue
        nxt += 1  # the decoder adds an entry for every code after the first
        if nxt == 1 << width and width < 12:
            width += 1
    emit(eoi, width)
    if nacc:
        out.append(acc & 255)
    return bytes(out)


def sub_blocks(data):
    out = bytearray()
    for i in range(0, len(data), 255):
        c = data[i:i + 255]
        out.append(len(c))
        out += c
    return bytes(out + b"\x00")


def gif(sw, sh, frames, gct=None, bg=0):
    """A GIF by hand. frames: dicts with x, y, idx (h×w), and optionally
    lct, trans (index), min_size, interlace."""
    out = bytearray(b"GIF89a" + struct.pack("<HH", sw, sh))
    if gct is not None:
        bits = max(1, int(np.ceil(np.log2(len(gct)))))
        table = np.zeros((1 << bits, 3), np.uint8)
        table[:len(gct)] = gct
        out += bytes([0x80 | (bits - 1), bg, 0]) + table.tobytes()
    else:
        out += bytes([0, bg, 0])
    for f in frames:
        if "trans" in f:
            out += b"\x21\xf9\x04" + bytes([0x01 | (2 << 2)]) + b"\x0a\x00" + bytes([f["trans"]]) + b"\x00"
        idx = f["idx"]
        h, w = idx.shape
        flags = 0x40 if f.get("interlace") else 0
        lct = f.get("lct")
        if lct is not None:
            bits = max(1, int(np.ceil(np.log2(len(lct)))))
            flags |= 0x80 | (bits - 1)
        out += b"\x2c" + struct.pack("<HHHH", f["x"], f["y"], w, h) + bytes([flags])
        if lct is not None:
            table = np.zeros((1 << bits, 3), np.uint8)
            table[:len(lct)] = lct
            out += table.tobytes()
        rows = idx
        if f.get("interlace"):
            order = list(range(0, h, 8)) + list(range(4, h, 8)) + list(range(2, h, 4)) + list(range(1, h, 2))
            rows = idx[order]
        ms = f.get("min_size", 8)
        out += bytes([ms]) + sub_blocks(lzw_literals(rows.reshape(-1), ms))
    return bytes(out + b"\x3b")


def gifs():
    w, h = 40, 30
    rgb = natural(w, h, 9)
    pim = Image.fromarray(rgb, "RGB").quantize(64, dither=Image.Dither.NONE)
    add("gif-pillow.gif", pil_bytes(pim, "GIF"), "palette GIF (Pillow)")
    add("gif-pillow-interlaced.gif", pil_bytes(pim, "GIF", interlace=True), "interlaced (Pillow)")
    idx = np.asarray(pim)
    pal = np.asarray(pim.getpalette()[:64 * 3], np.uint8).reshape(-1, 3)
    pal_t = pal.copy()
    pal_t[5] = [250, 120, 10]  # the transparent entry has a colour Pillow keeps
    add("gif-pillow-transparent.gif", pil_bytes(pim, "GIF", transparency=int(idx[0, 0])),
        "transparency index (Pillow): transparent pixels keep the palette colour")
    add("gif-transparent.gif", gif(w, h, [{"x": 0, "y": 0, "idx": idx, "trans": 5}], gct=pal_t),
        "transparency index 5, an orange palette entry")
    add("gif-lzw9.gif", gif(w, h, [{"x": 0, "y": 0, "idx": idx, "min_size": 9}], gct=pal), "LZW minimum code size 9")
    add("gif-lzw11.gif", gif(w, h, [{"x": 0, "y": 0, "idx": idx, "min_size": 11}], gct=pal), "LZW minimum code size 11")
    add("gif-lzw2.gif", gif(w, h, [{"x": 0, "y": 0, "idx": idx % 4, "min_size": 2}], gct=pal[:4]), "LZW minimum code size 2")
    add("gif-no-colour-table.gif", gif(w, h, [{"x": 0, "y": 0, "idx": idx}]), "no global or local colour table: indices as gray")
    add("gif-local-table.gif", gif(w, h, [{"x": 0, "y": 0, "idx": idx, "lct": pal[::-1]}], gct=pal), "a local colour table")
    add("gif-short-palette.gif", gif(w, h, [{"x": 0, "y": 0, "idx": idx}], gct=pal[:32]),
        "indices past the end of the colour table")
    add("gif-interlaced.gif", gif(w, h, [{"x": 0, "y": 0, "idx": idx, "interlace": True}], gct=pal), "interlaced by hand")
    sub = idx[5:25, 3:30]
    add("gif-small-first-frame.gif", gif(w, h, [{"x": 3, "y": 5, "idx": sub}], gct=pal, bg=7),
        "first frame smaller than the screen (background index 7)")
    add("gif-small-first-frame-transparent.gif", gif(w, h, [{"x": 3, "y": 5, "idx": sub, "trans": 5}], gct=pal_t, bg=7),
        "first frame smaller than the screen, with a transparency index")
    add("gif-frame-past-screen.gif", gif(30, 20, [{"x": 10, "y": 4, "idx": idx[:20, :30]}], gct=pal),
        "first frame reaching past the screen (Pillow grows the image)")
    second = {"x": 0, "y": 0, "idx": (idx + 7) % 64}
    add("gif-animated.gif", gif(w, h, [{"x": 2, "y": 2, "idx": idx[:20, :20]}, second], gct=pal),
        "animated: the first frame, smaller than the screen")


# ---------------------------------------------------------------- BMP

def bmp(w, h, bits, pixels, palette=None, header=40, compression=0, masks=None, gap=0, topdown=False,
        colors=None, data=None):
    """A BMP by hand. pixels: H×W of palette indices (bits <= 8) or of
    packed integers; rows are written bottom-up unless topdown. data, when
    given, replaces the pixel array (RLE)."""
    if data is None:
        stride = (w * bits + 31) // 32 * 4
        rows = []
        for y in range(h):
            row = pixels[y]
            if bits <= 8:
                b = pack_row(row, bits)
            elif bits == 16:
                b = np.asarray(row, "<u2").tobytes()
            elif bits == 24:
                b = np.asarray(row, np.uint8).reshape(-1).tobytes()
            else:
                b = np.asarray(row, "<u4").tobytes()
            rows.append(b + b"\x00" * (stride - len(b)))
        if not topdown:
            rows.reverse()
        data = b"".join(rows)
    pal = b""
    if palette is not None:
        p = np.asarray(palette, np.uint8)[:, ::-1]  # BGR
        if header != 12:
            p = np.concatenate([p, np.zeros((len(p), 1), np.uint8)], 1)
        pal = p.tobytes()
    if header == 12:
        info = struct.pack("<IHHHH", 12, w, h, 1, bits)
    else:
        hh = -h if topdown else h
        ncol = colors if colors is not None else (0 if palette is None else len(palette))
        info = struct.pack("<IiiHHIIiiII", header, w, hh, 1, bits, compression, len(data), 2835, 2835, ncol, 0)
        extra = b""
        if masks is not None and header == 40:
            extra = struct.pack("<III", *masks[:3])
        elif header > 40:
            m = masks if masks is not None else (0, 0, 0, 0)
            rest = struct.pack("<IIII", *m) + (b"BGRs" if header >= 108 else b"")
            info += rest
            info += b"\x00" * (header - len(info))
        info += extra
    off = 14 + len(info) + len(pal) + gap
    return b"BM" + struct.pack("<IHHI", off + len(data), 0, 0, off) + info + pal + b"\x00" * gap + data


def rle8(idx):
    """RLE8 with encoded runs, absolute runs and end-of-line codes,
    bottom-up. No delta codes: Pillow 9.4 reads two bytes too many after
    one (BmpRleDecoder), so its pixels there are no reference; the Go tests
    check deltas against the format instead."""
    out = bytearray()
    h, w = idx.shape
    for y in range(h - 1, -1, -1):
        row = list(map(int, idx[y]))
        x = 0
        while x < len(row):
            n = 1
            while x + n < len(row) and row[x + n] == row[x] and n < 255:
                n += 1
            if n >= 3 or len(row) - x < 3:
                out += bytes([n, row[x]])
                x += n
            else:
                m = min(len(row) - x, 255)
                lit = row[x:x + m][:max(3, m)]
                m = len(lit)
                out += bytes([0, m]) + bytes(lit) + (b"\x00" if m % 2 else b"")
                x += m
        out += b"\x00\x00"
    return bytes(out + b"\x00\x01")


def rle4(idx):
    """RLE4 with encoded runs (two alternating colours) and absolute runs
    (padded to a 16-bit word), bottom-up."""
    out = bytearray()
    h, w = idx.shape
    for y in range(h - 1, -1, -1):
        row = list(map(int, idx[y]))
        x = 0
        while x < len(row):
            a = row[x]
            b = row[x + 1] if x + 1 < len(row) else a
            n = 1
            while x + n < len(row) and n < 255 and row[x + n] == (a if n % 2 == 0 else b):
                n += 1
            if n >= 4 or len(row) - x < 4:
                out += bytes([n, a << 4 | b])
                x += n
                continue
            # Even absolute runs only: Pillow 9.4 reads an odd one's last
            # byte as the next code (it reads count//2 bytes).
            m = 6 if len(row) - x >= 6 else 4
            lit = row[x:x + m]
            packed = bytes(lit[i] << 4 | lit[i + 1] for i in range(0, m, 2))
            out += bytes([0, m]) + packed + (b"\x00" if len(packed) % 2 else b"")
            x += m
        out += b"\x00\x00"
    return bytes(out + b"\x00\x01")


def bmps():
    w, h = 27, 19
    rgb = natural(w, h, 11)
    bgr = rgb[..., ::-1]
    pim = Image.fromarray(rgb, "RGB").quantize(200, dither=Image.Dither.NONE)
    idx = np.asarray(pim).astype(int)
    pal = np.asarray(pim.getpalette()[:256 * 3], np.uint8).reshape(-1, 3)
    add("bmp-24.bmp", pil_bytes(Image.fromarray(rgb, "RGB"), "BMP"), "24-bit (Pillow)")
    add("bmp-8-pillow.bmp", pil_bytes(pim, "BMP"), "8-bit palette (Pillow)")
    add("bmp-24-topdown.bmp", bmp(w, h, 24, bgr, topdown=True), "24-bit, top-down (negative height)")
    add("bmp-32.bmp", bmp(w, h, 32, (bgr[..., 0].astype(np.uint32) | bgr[..., 1].astype(np.uint32) << 8 |
                                     bgr[..., 2].astype(np.uint32) << 16 | 0x7F000000)), "32-bit BGRX")
    rgb5 = (rgb >> 3).astype(np.uint32)
    add("bmp-16-555.bmp", bmp(w, h, 16, rgb5[..., 0] << 10 | rgb5[..., 1] << 5 | rgb5[..., 2]), "16-bit 5-5-5, no masks")
    rgb565 = (rgb[..., 0] >> 3).astype(np.uint32) << 11 | (rgb[..., 1] >> 2).astype(np.uint32) << 5 | (rgb[..., 2] >> 3)
    add("bmp-16-565.bmp", bmp(w, h, 16, rgb565, compression=3, masks=(0xF800, 0x7E0, 0x1F)), "16-bit 5-6-5 bitfields")
    add("bmp-16-555-bitfields.bmp", bmp(w, h, 16, rgb5[..., 0] << 10 | rgb5[..., 1] << 5 | rgb5[..., 2], compression=3,
                                        masks=(0x7C00, 0x3E0, 0x1F)), "16-bit 5-5-5 bitfields")
    rgba = natural(w, h, 12, alpha=True).astype(np.uint32)
    add("bmp-32-bitfields-alpha.bmp",
        bmp(w, h, 32, rgba[..., 2] | rgba[..., 1] << 8 | rgba[..., 0] << 16 | rgba[..., 3] << 24, header=124,
            compression=3, masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000)), "32-bit BGRA bitfields, v5 header")
    add("bmp-32-bitfields-rgba.bmp",
        bmp(w, h, 32, rgba[..., 0] | rgba[..., 1] << 8 | rgba[..., 2] << 16 | rgba[..., 3] << 24, header=108,
            compression=3, masks=(0xFF, 0xFF00, 0xFF0000, 0xFF000000)), "32-bit RGBA bitfields, v4 header")
    add("bmp-8.bmp", bmp(w, h, 8, idx, palette=pal), "8-bit palette")
    add("bmp-8-gap.bmp", bmp(w, h, 8, idx, palette=pal, gap=37), "8-bit, 37 bytes between the palette and the pixels")
    add("bmp-8-small-palette.bmp", bmp(w, h, 8, idx % 16, palette=pal[:16]), "8-bit with a 16-entry palette")
    add("bmp-4.bmp", bmp(w, h, 4, idx % 16, palette=pal[:16]), "4-bit palette")
    add("bmp-1.bmp", bmp(w, h, 1, idx % 2, palette=[[20, 40, 200], [250, 240, 10]]), "1-bit palette")
    add("bmp-os2v1-8.bmp", bmp(w, h, 8, idx, palette=pal, header=12), "OS/2 1.x header (12 bytes), 3-byte palette")
    add("bmp-os2v1-24.bmp", bmp(w, h, 24, bgr, header=12), "OS/2 1.x header, 24-bit")
    add("bmp-os2v2-8.bmp", bmp(w, h, 8, idx, palette=pal, header=64), "OS/2 2.x header (64 bytes)")
    add("bmp-v4-24.bmp", bmp(w, h, 24, bgr, header=108), "v4 header (108 bytes), 24-bit")
    add("bmp-v5-8.bmp", bmp(w, h, 8, idx, palette=pal, header=124), "v5 header (124 bytes), 8-bit")
    add("bmp-rle8.bmp", bmp(w, h, 8, None, palette=pal, compression=1, data=rle8(idx)),
        "RLE8: encoded and absolute runs, end of line")
    add("bmp-rle4.bmp", bmp(w, h, 4, None, palette=pal[:16], compression=2, data=rle4(idx % 16)),
        "RLE4: encoded and absolute runs")


# ---------------------------------------------------------------- WebP

def riff_chunks(webp):
    i, out = 12, []
    while i + 8 <= len(webp):
        t, n = webp[i:i + 4], struct.unpack("<I", webp[i + 4:i + 8])[0]
        out.append((t, webp[i + 8:i + 8 + n]))
        i += 8 + n + (n & 1)
    return out


def chunk(t, data):
    return t + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) & 1 else b"")


def u24(v):
    return struct.pack("<I", v)[:3]


def animated_webp(cw, ch, frames, bg=(255, 255, 255, 255)):
    """An animated WebP by hand: each frame (x, y, still WebP bytes) goes
    into an ANMF chunk at its offset (even, as the format requires)."""
    body = chunk(b"VP8X", bytes([0x12]) + b"\x00\x00\x00" + u24(cw - 1) + u24(ch - 1))
    body += chunk(b"ANIM", bytes([bg[2], bg[1], bg[0], bg[3]]) + struct.pack("<H", 0))
    for x, y, still in frames:
        w, h = Image.open(io.BytesIO(still)).size
        sub = b"".join(chunk(t, d) for t, d in riff_chunks(still) if t in (b"ALPH", b"VP8 ", b"VP8L"))
        hdr = u24(x // 2) + u24(y // 2) + u24(w - 1) + u24(h - 1) + u24(100) + bytes([0])
        body += chunk(b"ANMF", hdr + sub)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def webps():
    w, h = 40, 30
    im = rgb_image(w, h, 13)
    rgba = Image.fromarray(natural(w, h, 14, alpha=True), "RGBA")
    add("webp-lossy.webp", pil_bytes(im, "WEBP", quality=80), "lossy (VP8), limited-range YUV 4:2:0")
    add("webp-lossy-odd.webp", pil_bytes(rgb_image(33, 17, 15), "WEBP", quality=90), "lossy, 33×17")
    add("webp-lossy-alpha.webp", pil_bytes(rgba, "WEBP", quality=80, exact=True), "lossy with alpha (VP8X + ALPH)")
    add("webp-lossless.webp", pil_bytes(im, "WEBP", lossless=True), "lossless (VP8L)")
    add("webp-lossless-alpha.webp", pil_bytes(rgba, "WEBP", lossless=True, exact=True),
        "lossless with alpha, transparent pixels keep their colour (exact)")
    add("webp-lossy-gray.webp", pil_bytes(im.convert("L"), "WEBP", quality=85), "gray content, lossy")
    frames = [rgb_image(w, h, 16), rgb_image(w, h, 17)]
    add("webp-animated.webp", pil_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100,
                                         quality=80), "animated (Pillow): the first frame")
    small = pil_bytes(rgb_image(20, 14, 18), "WEBP", quality=85)
    small_a = pil_bytes(Image.fromarray(natural(18, 12, 19, alpha=True), "RGBA"), "WEBP", lossless=True, exact=True)
    add("webp-animated-offset.webp", animated_webp(w, h, [(6, 8, small), (0, 0, pil_bytes(frames[1], "WEBP"))]),
        "animated: the first frame smaller than the canvas, at an offset")
    add("webp-animated-alpha.webp", animated_webp(w, h, [(4, 2, small_a)]), "animated: one lossless frame with alpha at an offset")


def main():
    os.makedirs(EXP, exist_ok=True)
    for d in (HERE, EXP):
        for f in os.listdir(d):
            if f.split(".")[0] in ("jpeg", "png", "gif", "bmp", "webp") or f.startswith(("jpeg-", "png-", "gif-", "bmp-", "webp-")):
                os.remove(os.path.join(d, f))
    jpegs()
    pngs()
    gifs()
    bmps()
    webps()
    turbo = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libjpeg62-turbo"], stdout=subprocess.PIPE,
                           text=True).stdout
    meta = {
        "generator": "augment/testdata/pillow/gen.py",
        "pillow": PIL.__version__,
        "libjpeg-turbo": turbo or "unknown",
        "libwebp": features.version("webp"),
        "zlib": features.version("zlib"),
        "numpy": np.__version__,
        "files": entries,
    }
    with open(path("corpus.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"{len(entries)} files, Pillow {PIL.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
