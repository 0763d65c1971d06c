#!/usr/bin/env python3
"""Prepares Pillow's own test images for augment's TestPillowRepoImages.

    python3 pillow_repo.py PILLOW_CHECKOUT OUTDIR
    LOADERD_PILLOW_IMAGES=OUTDIR go test ./augment -run PillowRepoImages -v

Copies every .jpg/.jpeg/.png/.webp/.gif/.bmp under PILLOW_CHECKOUT/Tests/images
into OUTDIR/in (paths flattened with "__"), writes what this machine's Pillow
gives for each (Image.open(f).convert("RGB"), after ImageOps.exif_transpose
for JPEGs) to OUTDIR/exp/NAME.png, and OUTDIR/pillow.json: per file, whether
Pillow decodes it, its format and mode, or Pillow's error. Those images are
Pillow's (various licences), so they are not copied into this repository.
"""

import json
import os
import shutil
import sys
import warnings

from PIL import Image, ImageOps

src, out = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(out, "in"), exist_ok=True)
os.makedirs(os.path.join(out, "exp"), exist_ok=True)
Image.MAX_IMAGE_PIXELS = 1 << 26  # loaderd's default pixel limit
root = os.path.join(src, "Tests", "images")
res = {}
for d, _, files in os.walk(root):
    for f in files:
        if os.path.splitext(f)[1].lower() not in (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"):
            continue
        name = os.path.relpath(os.path.join(d, f), root).replace(os.sep, "__")
        p = os.path.join(out, "in", name)
        shutil.copyfile(os.path.join(d, f), p)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im = Image.open(p)
                fmt, mode = im.format, im.mode
                if fmt == "JPEG":
                    im = ImageOps.exif_transpose(im)
                im.convert("RGB").save(os.path.join(out, "exp", name + ".png"))
            res[name] = {"ok": True, "format": fmt, "mode": mode}
        except Exception as e:  # Pillow refuses it: recorded, not fatal
            res[name] = {"ok": False, "err": f"{type(e).__name__}: {e}"[:200]}
with open(os.path.join(out, "pillow.json"), "w") as f:
    json.dump({"pillow": Image.__version__, "files": res}, f, indent=1, sort_keys=True)
print(f"{sum(v['ok'] for v in res.values())} of {len(res)} decoded by Pillow {Image.__version__}", file=sys.stderr)
