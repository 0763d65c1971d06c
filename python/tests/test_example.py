"""examples/train.py, the README's DDP trainer, run for real on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")  # the [torch] extra

from conftest import REPO, free_port  # noqa: E402


def train(server, tmp_path, *args, ranks=2):
    cmd = [sys.executable, str(REPO / "examples" / "train.py")]
    if ranks > 1:
        cmd[1:1] = ["-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
                    "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                    # Debian's torch 1.13 under Python 3.11 cannot parse the
                    # default "0" of these (3.11 iterates an IntFlag's single
                    # bits only): send stderr through torchrun, stdout as is.
                    "--redirects", "2", "--tee", "2"]
    cmd += ["--addr", f"127.0.0.1:{server.port}", "--dataset", "d", "--batch-size", "4",
            "--accum-steps", "2", "--checkpoint", str(tmp_path / "ckpt.pt"), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    return sorted(lines, key=lambda r: (r["epoch"], r["rank"]))


def test_torchrun_two_ranks_checkpoint_and_resume(server, tmp_path):
    # 61 samples, 2 ranks, drop_last: 30 each, 7 micro-batches of 4.
    first = train(server, tmp_path, "--epochs", "2", "--max-steps", "3", "--save-every", "1")
    assert [(r["epoch"], r["rank"], r["world_size"]) for r in first] == [(0, 0, 2), (0, 1, 2)]
    assert all(r["batches"] == 6 and r["batches_per_epoch"] == 7 and r["optimizer_steps"] == 3
               for r in first)
    # The rerun resumes at batch 6 of epoch 0 (the checkpoint of step 3),
    # then trains epoch 1 whole.
    rest = train(server, tmp_path, "--epochs", "2")
    assert [(r["epoch"], r["rank"]) for r in rest] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [r["resumed_at"] for r in rest] == [6, 6, None, None]
    assert [r["images"] for r in rest] == [4, 4, 28, 28]
    assert all(r["batches"] == 7 for r in rest)


def test_one_process(server, tmp_path):
    (r,) = train(server, tmp_path, "--epochs", "1", ranks=1)
    assert (r["rank"], r["world_size"], r["batches"], r["images"]) == (0, 1, 15, 60)
