#!/usr/bin/env python3
"""Peer of `loaderd bench`: PyTorch's DataLoader with torchvision's
ImageNet training transforms, images/s and CPU use per num_workers.

Variants:
  pil     the standard recipe: PIL open + decode + convert("RGB"),
          transforms.RandomResizedCrop(224) (bilinear, antialiased),
          RandomHorizontalFlip(), then the HWC uint8 array as a tensor
  tensor  torchvision.io.decode_jpeg (libjpeg-turbo) to a uint8 CHW tensor,
          the same two transforms on the tensor (antialias=True), then HWC

DataLoader(batch_size=256, num_workers=W, shuffle=True, persistent_workers
for W > 0); the default collate stacks uint8 [B, 224, 224, 3]. num_workers=0
runs in-process with torch.set_num_threads(1): one core. The files are
ROOT/<class>/*.jpg, the same list every peer reads.

    python torchvision_peer.py DATASET_DIR --workers 0,1,2 --epochs 2 --repeats 3

Debian's python3-torchvision or a venv from bench/peers/setup.sh torchvision.
"""

import warnings

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.io import ImageReadMode, decode_jpeg, read_file

import peerlib

SYSTEM = "torchvision"
VARIANTS = ["pil", "tensor"]


# np.asarray of a PIL image is read-only; the tensor is only read.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


class Files(Dataset):
    """(image, label) of each path, image a uint8 [224, 224, 3] tensor."""

    def __init__(self, paths, labels, variant):
        self.paths, self.labels, self.variant = paths, labels, variant
        crop = transforms.RandomResizedCrop(peerlib.SIZE, antialias=True)
        self.tf = transforms.Compose([crop, transforms.RandomHorizontalFlip()])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        if self.variant == "pil":
            with open(self.paths[i], "rb") as f:
                img = Image.open(f)
                img = img.convert("RGB")  # decodes
            x = torch.from_numpy(np.asarray(self.tf(img)))
        else:
            img = decode_jpeg(read_file(self.paths[i]), mode=ImageReadMode.RGB)
            x = self.tf(img).permute(1, 2, 0)
        return x, self.labels[i]


def run(args, variant, workers, repeat, clock):
    paths, labels = peerlib.list_images(args.root)
    torch.manual_seed(args.seed + repeat)
    torch.set_num_threads(1)
    g = torch.Generator()
    g.manual_seed(args.seed + repeat)
    kw = {"persistent_workers": True} if workers > 0 else {}
    dl = DataLoader(Files(paths, labels, variant), batch_size=args.batch_size, num_workers=workers,
                    shuffle=True, generator=g, **kw)
    clock.start()
    for _ in range(args.epochs):
        for x, _y in dl:
            if clock.batches == 0:
                peerlib.first_batch(args, SYSTEM, variant, x.numpy())
            elif x.dtype != torch.uint8 or tuple(x.shape[1:]) != (peerlib.SIZE, peerlib.SIZE, 3):
                raise peerlib.PeerError("batch %s %s" % (x.dtype, tuple(x.shape)))
            clock.batch(x.shape[0])
            if clock.done():
                break
        if clock.done():
            break
    clock.stop()  # live workers' CPU is read from /proc
    del dl
    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__, "pillow": PIL.__version__}
    return "train", versions, len(paths), {}


if __name__ == "__main__":
    peerlib.main(run, SYSTEM, VARIANTS, __doc__.split("\n\n")[0])
