#!/usr/bin/env python3
"""A DDP trainer fed by loaderd: each rank streams its share of every epoch.

    loaderd demo --keep-serving &                       # serves "sample" at 127.0.0.1:8815
    venv/bin/python -m torch.distributed.run --redirects 2 --tee 2 --nproc_per_node 2 \
        examples/train.py --dataset sample --epochs 2           # torchrun, by the venv's Python
    venv/bin/python examples/train.py --dataset sample  # one process, no DDP

Under torchrun it joins the process group (NCCL on GPUs, gloo on the CPU);
LoaderdDataset takes its rank and world size from it. Micro-batches of
--batch-size are accumulated --accum-steps times per optimizer step, with
DDP's no_sync() on all but the last: every rank gets the same number of
batches, so no rank waits for another. With --checkpoint, rank 0 saves the
model, the optimizer and the loader's position in one file every
--save-every optimizer steps, at the end of each epoch and when it stops
at --max-steps, and a rerun resumes from there mid-epoch, with the very
batches the interrupted run would have trained on next. Optimizer steps are
counted across runs (the checkpoint keeps the count): --save-every and
--max-steps count from the first run, so a rerun with the same --max-steps
has nothing left to do. Prints one JSON line per rank and epoch, then one
per rank with the optimizer steps taken in all.

Run it with the Python that has the loaderd package and torch (the venv of
the README's "A trainer's side"), not a system python3 without them.
"""

import argparse
import contextlib
import json
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

# Run from a checkout without installing the package.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from loaderd.torch import LoaderdDataset  # noqa: E402


def model_for(classes):
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, classes))


def emit(record):
    """Prints record as one JSON line in one write: the ranks share stdout
    (unbuffered under torchrun), and a line written in pieces can interleave."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, where it has one."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=Help)
    ap.add_argument("--addr", default="127.0.0.1:8815", help="loaderd's address")
    ap.add_argument("--dataset", default="sample", help="a dataset the server serves (loaderd demo's is sample)")
    ap.add_argument("--epochs", type=int, default=2, help="train epochs 0 to EPOCHS-1 (a resume goes on from its checkpoint)")
    ap.add_argument("--batch-size", type=int, default=64, help="micro-batch per rank")
    ap.add_argument("--accum-steps", type=int, default=2, help="micro-batches per optimizer step")
    ap.add_argument("--checkpoint", help="file to save to, and to resume from when it exists")
    ap.add_argument("--save-every", type=int, default=50, help="optimizer steps between checkpoints")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many optimizer steps (0: none)")
    ap.add_argument("--gpu", help="this rank's GPU as loaderd names it (default: the CUDA device's index)")
    ap.add_argument("--token-file", help="file with loaderd's bearer token")
    args = ap.parse_args()

    distributed = "WORLD_SIZE" in os.environ  # set by torchrun
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if distributed:
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if distributed else 0
    token = open(args.token_file).read().strip() if args.token_file else None

    # The loader: a rank's share of each epoch, on its device, resumable.
    loader = LoaderdDataset(args.addr, args.dataset, args.batch_size, drop_last=True,
                            device=device, pin_memory=cuda, token=token,
                            gpu=args.gpu if args.gpu or not cuda else device.index)
    classes = len(next(d for d in loader.client.datasets() if d.name == args.dataset).classes)
    model = model_for(classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    # steps counts optimizer steps across runs: saved in the checkpoint, so
    # --save-every and --max-steps mean the same after a resume.
    start_epoch, resumed_at, steps = 0, None, 0
    if args.checkpoint and os.path.exists(args.checkpoint):
        ckpt = torch.load(args.checkpoint, map_location="cpu")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        loader.load_state_dict(ckpt["loader"])  # epoch and batch to go on from
        start_epoch, resumed_at = ckpt["loader"]["epoch"], ckpt["loader"]["batch"]
        steps = ckpt["optimizer_steps"]
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if cuda else None) \
        if distributed else model

    def save():
        if args.checkpoint and rank == 0:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "loader": loader.state_dict(), "optimizer_steps": steps}, args.checkpoint + ".tmp")
            os.replace(args.checkpoint + ".tmp", args.checkpoint)

    def done():
        return args.max_steps and steps >= args.max_steps

    for epoch in range(start_epoch, args.epochs):
        if done():
            break
        loader.set_epoch(epoch)
        start, seen, loss = time.time(), 0, torch.zeros(())
        per_epoch = len(loader)
        for images, labels, _ in loader:
            x = images.permute(0, 3, 1, 2).float().div_(255) if images.dtype == torch.uint8 else images
            position = loader.state_dict()["batch"]  # batches of this epoch trained, this one included
            last = position % args.accum_steps == 0 or position == per_epoch
            with contextlib.nullcontext() if last or not distributed else ddp.no_sync():
                loss = F.cross_entropy(ddp(x), labels)
                (loss / args.accum_steps).backward()
            seen += len(labels)
            if last:
                opt.step()
                opt.zero_grad(set_to_none=True)
                steps += 1
                if steps % args.save_every == 0 or done():
                    save()
                if done():
                    break
        else:
            save()  # the epoch is complete: a resume goes on with the next one
        dt = time.time() - start
        emit({"epoch": epoch, "rank": rank, "world_size": loader.world_size,
                          "batches": loader.state_dict()["batch"], "batches_per_epoch": per_epoch,
              "images": seen, "images_per_sec": round(seen / max(dt, 1e-9), 1),
              "loss": round(loss.item(), 4), "resumed_at": resumed_at,
              "optimizer_steps": steps, "device": str(device)})
        resumed_at = None
    emit({"rank": rank, "optimizer_steps": steps, "epoch": loader.epoch,
          "batch": loader.state_dict()["batch"], "max_steps_reached": bool(done())})
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
