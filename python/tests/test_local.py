"""The local transport (docs/SPEC.md §9): a trainer on the server's host
reads the cache in place, with the bytes of the ordinary stream."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import loaderd
from conftest import REPO, SAMPLES, Server, values_digest

SHAPES = [
    dict(batch_size=16),
    dict(batch_size=5, rank=2, world_size=3),
    dict(batch_size=4, rank=1, world_size=2, drop_last=True),
    dict(batch_size=8, start_batch=3),
    dict(batch_size=7, shuffle=False),
    dict(batch_size=100),
]


def leases(server: Server):
    return sorted((server.cache / "local").glob("lease-*"))


def digest(client, transport, epoch=0, **req):
    stream = client.batches("d", epoch=epoch, transport=transport, **req)
    d = values_digest(stream)
    return d, stream.transport, stream.yielded


@pytest.mark.parametrize("req", SHAPES, ids=lambda r: ",".join(f"{k}={v}" for k, v in r.items()))
def test_same_bytes_as_flight_cold_and_warm(new_server, req):
    s = new_server().start()
    with s.client() as c:
        cold = digest(c, "local", epoch=1, **req)  # nothing of epoch 1 is cached yet
        c.precompute("d", [1])
        warm = digest(c, "local", epoch=1, **req)
        want = digest(c, "flight", epoch=1, **req)
    assert cold[1] == warm[1] == "local" and want[1] == "flight"
    assert cold == warm and cold[0] == want[0] and cold[2] == want[2] > 0
    assert leases(s) == []


def test_same_bytes_as_the_go_client(server, loaderd_bin):
    """Both clients read in place the same bytes (`loaderd fetch --digest`)."""
    with server.client() as c:
        got, transport, _ = digest(c, "auto", batch_size=16)
    out = subprocess.run([str(loaderd_bin), "fetch", "--addr", server.address, "--dataset", "d",
                          "--batch-size", "16", "--transport", "local", "--digest"],
                         capture_output=True, text=True, check=True).stdout
    assert transport == "local"
    assert f"sha256 {got}" in out and "(local)" in out


class UnixServer(Server):
    """A `loaderd serve` on a Unix-domain socket."""

    @property
    def address(self) -> str:
        return f"unix://{self.workdir / 'loaderd.sock'}"

    def argv(self):
        return super().argv() + ["--listen", self.address]


def test_unix_socket(loaderd_bin, sample_data, tmp_path):
    s = UnixServer(loaderd_bin, tmp_path, sample_data).start()
    try:
        with s.client() as c:
            got = digest(c, "auto", batch_size=8)
            want = digest(c, "flight", batch_size=8)
        assert got[1] == "local" and got[0] == want[0]
    finally:
        s.stop()


def test_auto_falls_back_saying_why_once(server, tmp_path, caplog):
    """A process that cannot read the cache (here: it looks for it where it is
    not) streams over Flight, with one warning; "local" raises instead."""
    with server.client(cache_dir=tmp_path) as c, caplog.at_level(logging.INFO, logger="loaderd"):
        first = digest(c, "auto", batch_size=16)
        again = digest(c, "auto", batch_size=16)
        with pytest.raises(loaderd.LocalUnavailable, match="cannot read the server's cache"):
            list(c.batches("d", batch_size=16, transport="local"))
    with server.client() as c:
        want = digest(c, "local", batch_size=16)
    lines = [r for r in caplog.records if "over Flight" in r.getMessage()]
    assert first[1] == again[1] == "flight" and first[0] == want[0]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "cannot read the server's cache" in lines[0].getMessage()
    with pytest.raises(loaderd.InvalidRequest, match="transport"):
        server.client().batches("d", transport="shm")


def test_killed_trainer_releases_its_files(server):
    """A trainer killed (SIGKILL) while it reads in place: its stream's
    files are released at once."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO / "python")!r})
        import loaderd
        stream = loaderd.Client({server.address!r}).batches("d", batch_size=2, transport="local")
        next(stream)
        print("reading", flush=True)
        time.sleep(600)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b"reading"
        assert len(leases(server)) == 1
    finally:
        p.kill()
        p.wait()
    end = time.monotonic() + 10
    while leases(server) and time.monotonic() < end:
        time.sleep(0.02)
    assert leases(server) == []


def test_torch_dataset_reads_in_place(server):
    torch = pytest.importorskip("torch")
    from loaderd.torch import LoaderdDataset

    def rows(transport):
        ds = LoaderdDataset(server.address, "d", 16, transport=transport)
        out = [(b.images.clone(), b.labels.clone(), b.index.clone()) for b in ds]
        return out, ds._client

    local, _ = rows("local")
    flight, _ = rows("flight")
    assert len(local) == len(flight) == 4
    for (a, b, c), (x, y, z) in zip(local, flight):
        assert torch.equal(a, x) and torch.equal(b, y) and torch.equal(c, z)
    with pytest.raises(loaderd.InvalidRequest, match="transport"):
        LoaderdDataset(server.address, "d", 16, transport="shm")


def test_pinned_gather(server):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("pinned memory needs CUDA, which this machine lacks")
    from loaderd.torch import LoaderdDataset
    ds = LoaderdDataset(server.address, "d", 16, transport="local", pin_memory=True)
    b = next(iter(ds))
    assert b.images.is_pinned()
