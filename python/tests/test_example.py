"""examples/train.py, the README's DDP trainer, run for real on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

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
    epochs = sorted((r for r in lines if "epoch" in r and "world_size" in r), key=lambda r: (r["epoch"], r["rank"]))
    ends = sorted((r for r in lines if "max_steps_reached" in r), key=lambda r: r["rank"])
    assert len(ends) == ranks, p.stdout
    return epochs, ends


def test_torchrun_two_ranks_checkpoint_and_resume(server, tmp_path):
    # 61 samples, 2 ranks, drop_last: 30 each, 7 micro-batches of 4, an
    # optimizer step after micro-batches 2, 4, 6 and 7 of each epoch.
    first, ends = train(server, tmp_path, "--epochs", "2", "--max-steps", "3", "--save-every", "1")
    assert [(r["epoch"], r["rank"], r["world_size"]) for r in first] == [(0, 0, 2), (0, 1, 2)]
    assert all(r["batches"] == 6 and r["batches_per_epoch"] == 7 and r["optimizer_steps"] == 3
               for r in first)
    assert all(e["optimizer_steps"] == 3 and e["max_steps_reached"] for e in ends)
    # Steps count across runs (the checkpoint keeps them): the same
    # --max-steps again has nothing left to do.
    again, ends = train(server, tmp_path, "--epochs", "2", "--max-steps", "3")
    assert again == [] and all(e["optimizer_steps"] == 3 and (e["epoch"], e["batch"]) == (0, 6) for e in ends)
    # The rerun resumes at batch 6 of epoch 0 (the checkpoint of step 3),
    # then trains epoch 1 whole: steps 4 to 8.
    rest, ends = train(server, tmp_path, "--epochs", "2")
    assert [(r["epoch"], r["rank"]) for r in rest] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [r["resumed_at"] for r in rest] == [6, 6, None, None]
    assert [r["images"] for r in rest] == [4, 4, 28, 28]
    assert [r["optimizer_steps"] for r in rest] == [4, 4, 8, 8]
    assert all(r["batches"] == 7 for r in rest)
    assert all(e["optimizer_steps"] == 8 and not e["max_steps_reached"] for e in ends)


def test_one_process(server, tmp_path):
    (r,), (end,) = train(server, tmp_path, "--epochs", "1", ranks=1)
    assert (r["rank"], r["world_size"], r["batches"], r["images"]) == (0, 1, 15, 60)
    assert end["optimizer_steps"] == r["optimizer_steps"] == 8


def test_readme_snippet_counts_steps_across_resumes(server, tmp_path):
    """The README's loader code, run as written with a stand-in model: its
    step counter goes on from the checkpoint, so a resumed run saves at the
    next multiple of the interval, not at once."""
    readme = (REPO / "README.md").read_text()
    snippet = readme.split("A DDP trainer's loader code")[1].split("```python\n")[1].split("```")[0]
    assert "step % 500 == 0" in snippet
    prelude = textwrap.dedent(f"""
        import os, sys, torch
        sys.path.insert(0, {str(REPO / "python")!r})
        device, rank, epochs = torch.device("cpu"), 0, 1
        model = torch.nn.Linear(2, 2)
        saves, trained = [], []
        _save = torch.save
        def train_step(images, labels):
            trained.append(len(labels))
            if len(trained) == int(os.environ["STOP_AT"]):
                raise SystemExit(0)  # the job is killed here
        def save(obj, path):
            saves.append(obj["step"])
            print("saved", obj["step"], obj["loader"]["batch"], flush=True)
            _save(obj, path)
    """)
    code = prelude + snippet.replace("torch.save(", "save(").replace("500", "4").replace(
        '"127.0.0.1:8815", "train", batch_size=256', f'{server.address!r}, "d", batch_size=2').replace(
        ", pin_memory=True, gpu=device.index", "")

    def run(stop_at):
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                           cwd=tmp_path, env=dict(os.environ, STOP_AT=str(stop_at)))
        assert p.returncode == 0, p.stdout + p.stderr
        return [tuple(map(int, l.split()[1:])) for l in p.stdout.splitlines() if l.startswith("saved")]

    # 61 samples, batches of 2, drop_last: 30 batches. Killed in batch 10:
    # saved after steps 4 and 8.
    assert run(10) == [(4, 4), (8, 8)]
    # Resumed from step 8: the next save is step 12 (batch 12), not at once.
    assert run(10)[:1] == [(12, 12)]


def test_demo_hint_runs(loaderd_bin, tmp_path):
    """`loaderd demo --keep-serving` names the Python to run the example
    with (a venv's, with the package and torch), and its command runs."""
    port = free_port()
    demo = subprocess.Popen([str(loaderd_bin), "demo", "--keep-serving", "--dir", str(tmp_path / "demo"),
                             "--images", "16", "--listen", f"127.0.0.1:{port}", "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if "examples/train.py" in line:
                break
        hint = "".join(lines[-3:])
        assert "venv/bin/pip install './python[torch]'" in hint, hint
        command = f"venv/bin/python examples/train.py --addr 127.0.0.1:{port} --dataset sample"
        assert lines[-1].strip() == command, hint
        argv = [sys.executable] + command.split()[1:] + ["--batch-size", "4", "--epochs", "1"]
        p = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert p.returncode == 0, p.stdout + p.stderr
        assert '"optimizer_steps": 2' in p.stdout, p.stdout
    finally:
        demo.terminate()
        demo.wait(timeout=30)
