#!/usr/bin/env python3
"""Peer of `loaderd bench`: an NVIDIA DALI pipeline, images/s and CPU use
per num_threads.

Variants (CPU backend, device_id=None, unless --device mixed):
  rrc   fn.decoders.image (libjpeg-turbo) of the whole image, then
        fn.random_resized_crop(size=224, random_area 0.08–1, random_aspect_ratio
        3/4–4/3, linear, antialiased)
  roi   DALI's own ImageNet recipe: fn.decoders.image_random_crop (decodes
        only the window, same area and aspect ranges) then fn.resize to
        224×224 (linear, antialiased)

Both: fn.readers.file over the same file list (random_shuffle), fn.flip with
fn.random.coin_flip(0.5), HWC uint8 batches of 256 copied out as numpy
arrays; Pipeline(num_threads=W). --device mixed decodes with nvJPEG on GPU 0
and resizes on the GPU (output stays there; needs an NVIDIA GPU).

    python dali_peer.py DATASET_DIR --workers 1,2 --epochs 2 --repeats 3
"""

import math

import nvidia.dali as dali
import nvidia.dali.fn as fn
import nvidia.dali.types as types
from nvidia.dali import pipeline_def

import peerlib

SYSTEM = "dali"
VARIANTS = ["rrc", "roi"]
AREA = [0.08, 1.0]
ASPECT = [3 / 4, 4 / 3]


@pipeline_def
def imagenet_train(paths, labels, variant, device):
    jpegs, _labels = fn.readers.file(files=paths, labels=labels, random_shuffle=True, name="Reader")
    ops = "gpu" if device == "mixed" else "cpu"
    if variant == "rrc":
        images = fn.decoders.image(jpegs, device=device, output_type=types.RGB)
        images = fn.random_resized_crop(images, device=ops, size=[peerlib.SIZE, peerlib.SIZE],
                                        random_area=AREA, random_aspect_ratio=ASPECT,
                                        interp_type=types.INTERP_LINEAR, antialias=True)
    else:
        images = fn.decoders.image_random_crop(jpegs, device=device, output_type=types.RGB,
                                               random_area=AREA, random_aspect_ratio=ASPECT, num_attempts=10)
        images = fn.resize(images, device=ops, resize_x=peerlib.SIZE, resize_y=peerlib.SIZE,
                           interp_type=types.INTERP_LINEAR, antialias=True)
    return fn.flip(images, device=ops, horizontal=fn.random.coin_flip(probability=0.5))


def run(args, variant, workers, repeat, clock):
    paths, labels = peerlib.list_images(args.root)
    gpu = args.device == "mixed"
    pipe = imagenet_train(paths, labels, variant, args.device, batch_size=args.batch_size,
                          num_threads=workers, device_id=0 if gpu else None,
                          seed=args.seed + repeat + 1, prefetch_queue_depth=2)
    pipe.build()
    iterations = args.epochs * math.ceil(pipe.epoch_size("Reader") / args.batch_size)
    clock.start()
    for _ in range(iterations):
        (out,) = pipe.run()
        if clock.batches == 0:
            peerlib.first_batch(args, SYSTEM, variant, (out.as_cpu() if gpu else out).as_array())
            n = len(out)
        elif gpu:
            n = len(out)  # outputs stay on the GPU, as a trainer's would
        else:
            x = out.as_array()  # the copy out of DALI's buffers a trainer makes
            if x.shape[1:] != (peerlib.SIZE, peerlib.SIZE, 3):
                raise peerlib.PeerError("batch %s %s" % (x.dtype, x.shape))
            n = x.shape[0]
        clock.batch(n)
        if clock.done():
            break
    clock.stop()
    del pipe
    return "train", {"dali": dali.__version__}, len(paths), {"device": args.device}


def add_args(ap):
    ap.add_argument("--device", choices=["cpu", "mixed"], default="cpu",
                    help="decoder: cpu (libjpeg-turbo, default) or mixed (nvJPEG on GPU 0)")


if __name__ == "__main__":
    peerlib.main(run, SYSTEM, VARIANTS, __doc__.split("\n\n")[0], add_args)
