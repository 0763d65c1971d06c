#!/usr/bin/env python3
"""A trainer's side of loaderd: stream batches over Arrow Flight into torch.

Each rank of a DDP-style job asks for its own share of the epoch:

    python3 examples/train.py --addr 127.0.0.1:8815 --dataset sample \
        --rank 0 --world-size 1 --epochs 2 --batch-size 64

Under torchrun, RANK and WORLD_SIZE are taken from the environment. The
images arrive as uint8 NHWC (or float32 NCHW after a normalize op) and become
torch tensors without a copy: pyarrow exposes the Arrow buffer to numpy,
torch.from_numpy wraps it.
"""

import argparse
import json
import os
import time

import numpy as np
import pyarrow.flight as flight
import torch


class LoaderdBatches:
    """Iterates (images, labels, indices) torch tensors of one rank's epoch."""

    def __init__(self, addr, dataset, epoch, batch_size, rank, world_size,
                 start_batch=0, drop_last=False, gpu=None, token=None):
        self.client = flight.FlightClient(f"grpc://{addr}")
        self.options = flight.FlightCallOptions(
            headers=[(b"authorization", f"Bearer {token}".encode())] if token else [])
        request = {"dataset": dataset, "epoch": epoch, "batch_size": batch_size,
                   "rank": rank, "world_size": world_size,
                   "start_batch": start_batch, "drop_last": drop_last}
        if gpu is not None:
            request["gpu"] = str(gpu)
        self.descriptor = flight.FlightDescriptor.for_command(json.dumps(request))

    def __iter__(self):
        info = self.client.get_flight_info(self.descriptor, self.options)
        for endpoint in info.endpoints:  # ordered; no location means this server
            reader = self.client.do_get(endpoint.ticket, self.options)
            for chunk in reader:
                batch = chunk.data
                images = batch.column("image").to_numpy_ndarray()  # no copy
                labels = batch.column("label").to_numpy(zero_copy_only=True)
                index = batch.column("index").to_numpy(zero_copy_only=True)
                # Arrow buffers are read-only; torch warns on those but shares
                # the memory. Copy only when moving to the GPU.
                yield (torch.from_numpy(images), torch.from_numpy(labels),
                       torch.from_numpy(index.view(np.int64)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--addr", default="127.0.0.1:8815")
    ap.add_argument("--dataset", default="sample")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rank", type=int, default=int(os.environ.get("RANK", 0)))
    ap.add_argument("--world-size", type=int, default=int(os.environ.get("WORLD_SIZE", 1)))
    ap.add_argument("--gpu", default=None, help="this rank's GPU, for placement (e.g. 0)")
    ap.add_argument("--token-file", default=None)
    args = ap.parse_args()
    token = open(args.token_file).read().strip() if args.token_file else None
    device = torch.device("cuda", args.rank % torch.cuda.device_count()) \
        if torch.cuda.is_available() else torch.device("cpu")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(8, 1000)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in range(args.epochs):
        start, seen, seen_index = time.time(), 0, []
        for images, labels, index in LoaderdBatches(
                args.addr, args.dataset, epoch, args.batch_size,
                args.rank, args.world_size, gpu=args.gpu, token=token):
            x = images.to(device, non_blocking=True)
            if x.dtype == torch.uint8:  # NHWC uint8 → NCHW float
                x = x.permute(0, 3, 1, 2).float().div_(255)
            loss = torch.nn.functional.cross_entropy(model(x), labels.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(labels)
            seen_index.append(index)
        dt = time.time() - start
        print(json.dumps({"epoch": epoch, "rank": args.rank, "images": seen,
                          "images_per_sec": round(seen / dt, 1), "loss": round(loss.item(), 4),
                          "first_indices": torch.cat(seen_index)[:5].tolist(),
                          "device": str(device)}))


if __name__ == "__main__":
    main()
