"""What every peer script of `loaderd bench` shares: the command line, the
file list, the clock, the CPU accounting, the output checks and the JSON
lines. Standard library and numpy only: each peer runs in its own venv.

A peer script runs loaderd's imagenet-train work (decode,
RandomResizedCrop(224, scale 0.08–1, ratio 3/4–4/3), horizontal flip with
p=0.5, uint8 HWC batches) with its framework, for every (variant, workers)
configuration asked for, and prints one JSON object per configuration and
repeat on stdout (see `result`). Diagnostics go to stderr.

Timing: before each configuration's timed runs, an untimed warm-up run of
one batch (imports, kernels, file cache). A timed run builds the pipeline,
then starts the clock just before asking for the first batch, and counts
every image of --epochs epochs: its start-up (worker processes, filling its
prefetch queues) is part of the time, as it is for a trainer, and work
prefetched before the clock cannot be credited to it. CPU: the process's
CPU time plus its descendants' (live ones from /proc, reaped ones from
getrusage) over the same interval, so `cpu_cores` is the number of cores
the peer kept busy while timed.
"""

import argparse
import json
import os
import platform
import resource
import struct
import sys
import time
import zlib

import numpy as np

SIZE = 224
JPEG_EXTENSIONS = (".jpg", ".jpeg", ".JPG", ".JPEG")


class PeerError(Exception):
    """A run that cannot give a fair figure: wrong output, no images."""


def parser(description, variants):
    """The command line every peer takes; variants are the script's own."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("root", help="dataset directory in ImageFolder layout (ROOT/<class>/<image>.jpg)")
    ap.add_argument("--workers", default="1,2",
                    help="comma-separated worker (thread/process) counts (default 1,2)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per configuration (default 2)")
    ap.add_argument("--batch-size", type=int, default=256, help="images per batch (default 256)")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs of each configuration (default 1)")
    ap.add_argument("--variant", default=variants[0],
                    help="comma-separated variants to run: %s (default %s)" % (", ".join(variants), variants[0]))
    ap.add_argument("--seed", type=int, default=0, help="shuffle and augmentation seed")
    ap.add_argument("--samples", metavar="DIR",
                    help="write the first batch's first 16 images of each variant to DIR as "
                         "<system>-<variant>.npy (uint8 [16,224,224,3]) and .png (a 4×4 sheet)")
    return ap


def parse_list(s, allowed=None, what="value"):
    out = [v.strip() for v in s.split(",") if v.strip() != ""]
    if allowed is not None:
        for v in out:
            if v not in allowed:
                raise SystemExit("unknown %s %r (want one of %s)" % (what, v, ", ".join(allowed)))
    return out


def list_images(root):
    """(paths, labels) of ROOT/<class>/<file> with a JPEG extension, classes
    in sorted order as torchvision's ImageFolder numbers them."""
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
    paths, labels = [], []
    for label, c in enumerate(classes):
        for dirpath, _dirs, files in sorted(os.walk(os.path.join(root, c))):
            for f in sorted(files):
                if f.endswith(JPEG_EXTENSIONS):
                    paths.append(os.path.join(dirpath, f))
                    labels.append(label)
    if not paths:
        raise PeerError("no JPEG files under %s/<class>/" % root)
    return paths, labels


def cpu_seconds():
    """CPU seconds (user + system) of this process and all its descendants:
    live ones from /proc (with the children they reaped), reaped children
    from getrusage. DataLoader workers may be grandchildren (forkserver)."""
    tick = os.sysconf("SC_CLK_TCK")
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    procs = {}  # pid -> (ppid, own and reaped children's ticks)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                stat = f.read().decode()
        except OSError:
            continue
        # After the command, which may hold spaces: state(3) ppid(4) ...
        # utime(14) stime(15) cutime(16) cstime(17).
        rest = stat[stat.rfind(")") + 2:].split()
        procs[int(entry)] = (int(rest[1]), sum(int(v) for v in rest[11:15]))
    children = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    todo = list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        total += procs[pid][1] / tick
        todo.extend(children.get(pid, []))
    return total


class Clock:
    """Times a run: start() just before asking for the first batch, then
    batch(images) for every batch delivered; done() says when a warm-up run
    (limit batches) has had enough."""

    def __init__(self, limit=None):
        self.images = 0
        self.t0 = None
        self.c0 = None
        self.batches = 0
        self.limit = limit

    def start(self):
        self.t0 = time.perf_counter()
        self.c0 = cpu_seconds()

    def batch(self, n):
        self.batches += 1
        self.images += n

    def done(self):
        return self.limit is not None and self.batches >= self.limit

    def stop(self):
        if self.t0 is None or self.images == 0:
            raise PeerError("no batch delivered")
        self.seconds = time.perf_counter() - self.t0
        self.cpu = cpu_seconds() - self.c0


def check_batch(x, batch_size, where):
    """Raises PeerError unless x is a uint8 [n, 224, 224, 3] array, 0 < n ≤ batch_size."""
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (SIZE, SIZE, 3) or not 0 < x.shape[0] <= batch_size:
        raise PeerError("%s: batch %s %s, want uint8 [≤%d, %d, %d, 3]" % (where, x.dtype, x.shape, batch_size, SIZE, SIZE))


def check_samples(x, where):
    """Raises PeerError if the sample images are implausible: constant, or
    all alike (the same crop every time)."""
    x = np.asarray(x)
    if x.std() < 1:
        raise PeerError("%s: sample images are flat (std %.2f)" % (where, x.std()))
    if len(x) > 1 and np.abs(x[1:].astype(np.int16) - x[:1]).mean() < 1:
        raise PeerError("%s: sample images are all the same" % where)


def save_samples(dirname, system, variant, x):
    """Writes x[:16] as DIR/<system>-<variant>.npy and a 4×4 PNG sheet."""
    x = np.ascontiguousarray(x[:16])
    os.makedirs(dirname, exist_ok=True)
    base = os.path.join(dirname, "%s-%s" % (system, variant))
    np.save(base + ".npy", x)
    rows = []
    for r in range(0, len(x), 4):
        row = list(x[r:r + 4])
        row += [np.zeros_like(x[0])] * (4 - len(row))
        rows.append(np.concatenate(row, axis=1))
    write_png(base + ".png", np.concatenate(rows, axis=0))


def first_batch(args, system, variant, x):
    """Checks the first batch of a run (shape, plausible images) and, with
    --samples, saves its first 16 images."""
    where = "%s %s" % (system, variant)
    check_batch(x, args.batch_size, where)
    check_samples(x[:16], where)
    if args.samples:
        save_samples(args.samples, system, variant, x)


def write_png(path, rgb):
    """Writes a uint8 [H, W, 3] array as an 8-bit RGB PNG."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def result(system, variant, mode, workers, clock, args, dataset_images, versions, **extra):
    """Prints one configuration's JSON line on stdout."""
    line = {
        "system": system,
        "variant": variant,
        "mode": mode,
        "workers": workers,
        "images": clock.images,
        "seconds": round(clock.seconds, 4),
        "images_per_s": round(clock.images / clock.seconds, 2),
        "cpu_seconds": round(clock.cpu, 3),
        "cpu_cores": round(clock.cpu / clock.seconds, 3),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "dataset_images": dataset_images,
        "dataset": os.path.basename(os.path.normpath(args.root)),
        "versions": dict(versions, python=platform.python_version(), numpy=np.__version__),
        "cpus": os.cpu_count(),
    }
    line.update(extra)
    print(json.dumps(line), flush=True)


def main(run, system, variants, description, add_args=None):
    """Parses the command line (add_args(parser) adds a script's own flags)
    and calls run(args, variant, workers, repeat, clock) for each
    configuration, first with Clock(limit=1) as the warm-up; run returns
    (mode, versions, dataset images, extra dict for the JSON line). A
    PeerError ends the script with exit status 3 and its message."""
    ap = parser(description, variants)
    if add_args is not None:
        add_args(ap)
    args = ap.parse_args()
    try:
        args.workers = [int(w) for w in parse_list(args.workers, what="worker count")]
    except ValueError:
        raise SystemExit("--workers: want a list like 1,2")
    args.variant = parse_list(args.variant, variants, "variant")
    try:
        for variant in args.variant:
            for w in args.workers:
                run(args, variant, w, args.repeats, Clock(limit=1))  # a seed no timed run uses
                for rep in range(args.repeats):
                    clock = Clock()
                    mode, versions, n, extra = run(args, variant, w, rep, clock)
                    result(system, variant, mode, w, clock, args, n, versions, repeat=rep, **extra)
    except PeerError as e:
        print("%s: %s" % (system, e), file=sys.stderr)
        sys.exit(3)
