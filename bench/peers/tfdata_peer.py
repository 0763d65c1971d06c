#!/usr/bin/env python3
"""Peer of `loaderd bench`: tf.data with TensorFlow's image ops, images/s
and CPU use per num_parallel_calls.

Variants:
  crop    the tuned ImageNet recipe: read_file, extract_jpeg_shape,
          stateless_sample_distorted_bounding_box (area 0.08–1, aspect
          3/4–4/3, 10 attempts, else the whole image), decode_and_crop_jpeg
          (decodes only the window), resize to 224×224 (bilinear,
          antialias=True, as PIL and loaderd), stateless_random_flip_left_right,
          round to uint8
  cache   loaderd's multi-epoch case in tf.data: read_file + decode_jpeg,
          cache() in memory, then per epoch the same window, resize and
          flip on the decoded image; the first epoch decodes, later ones
          only augment. Timed over all --epochs, the decoding epoch included
          (use 4 to compare with loaderd's 4 fused epochs, whose time
          includes their one decode).

Both: shuffle every epoch, map(num_parallel_calls=W, deterministic=False),
batch(256), prefetch(AUTOTUNE), as numpy uint8 [B, 224, 224, 3]; the
dataset's private thread pool has W threads and each op one
(max_intra_op_parallelism=1), TensorFlow's own pools W threads: W cores.

    python tfdata_peer.py DATASET_DIR --workers 1,2 --epochs 2 --repeats 3
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no oneDNN banner on stderr

import tensorflow as tf  # noqa: E402

import peerlib  # noqa: E402

SYSTEM = "tfdata"
VARIANTS = ["crop", "cache"]
_threads_set = False


def window(shape, seed):
    """RandomResizedCrop's window (offset_y, offset_x, height, width) in an
    image of shape [h, w, c]."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    return begin, size


def finish(img, seed):
    img = tf.image.resize(img, [peerlib.SIZE, peerlib.SIZE], method="bilinear", antialias=True)
    img = tf.image.stateless_random_flip_left_right(img, seed=seed + [0, 1 << 40])
    return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)


def seeds(base, index):
    return tf.stack([tf.constant(base, tf.int64), index])


def dataset(paths, labels, variant, workers, epochs, batch_size, seed):
    n = len(paths)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    if variant == "cache":
        def decode(path, label):
            return tf.io.decode_jpeg(tf.io.read_file(path), channels=3), label
        ds = ds.map(decode, num_parallel_calls=workers, deterministic=False).cache()

        def augment(i, item):
            img, label = item
            s = seeds(seed, i)
            begin, size = window(tf.shape(img), s)
            return finish(tf.slice(img, begin, size), s), label
    else:
        def augment(i, item):
            path, label = item
            s = seeds(seed, i)
            data = tf.io.read_file(path)
            begin, size = window(tf.io.extract_jpeg_shape(data), s)
            crop = tf.io.decode_and_crop_jpeg(data, tf.stack([begin[0], begin[1], size[0], size[1]]), channels=3)
            return finish(crop, s), label
    ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True).repeat(epochs).enumerate()
    ds = ds.map(augment, num_parallel_calls=workers, deterministic=False)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    opts = tf.data.Options()
    opts.threading.private_threadpool_size = workers
    opts.threading.max_intra_op_parallelism = 1
    opts.deterministic = False
    return ds.with_options(opts)


def run(args, variant, workers, repeat, clock):
    global _threads_set
    if not _threads_set:  # settable once per process, before the first op
        tf.config.threading.set_inter_op_parallelism_threads(max(args.workers))
        tf.config.threading.set_intra_op_parallelism_threads(1)
        _threads_set = True
    paths, labels = peerlib.list_images(args.root)
    ds = dataset(paths, labels, variant, workers, args.epochs, args.batch_size, args.seed + repeat)
    clock.start()
    for x, _y in ds.as_numpy_iterator():
        if clock.batches == 0:
            peerlib.first_batch(args, SYSTEM, variant, x)
        elif x.shape[1:] != (peerlib.SIZE, peerlib.SIZE, 3):
            raise peerlib.PeerError("batch %s %s" % (x.dtype, x.shape))
        clock.batch(x.shape[0])
        if clock.done():
            break
    clock.stop()
    mode = "cache" if variant == "cache" else "train"
    return mode, {"tensorflow": tf.__version__}, len(paths), {}


if __name__ == "__main__":
    peerlib.main(run, SYSTEM, VARIANTS, __doc__.split("\n\n")[0])
