"""loaderd.Client against a real `loaderd serve`."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pytest

import loaderd
from loaderd._client import _app_metadata, _to_batch
from conftest import PIPELINE, SAMPLES, copy_data, values_digest


def collect(stream):
    return [b for b in stream]


def test_version_matches_binary(loaderd_bin):
    out = subprocess.run([str(loaderd_bin), "version"], capture_output=True, text=True, check=True).stdout
    assert out.split()[:2] == ["loaderd", loaderd.__version__]


def test_datasets(server):
    with server.client() as c:
        (ds,) = c.datasets()
    assert ds.name == "d" and ds.samples == SAMPLES
    assert ds.classes == [f"class_{i:02d}" for i in range(8)]
    assert ds.pipeline == PIPELINE and ds.seed == 0


def test_app_metadata_without_the_attribute():
    """pyarrow < 15 has no FlightInfo.app_metadata; it is read from the protobuf."""

    class Old:  # FlightInfo as pyarrow 14 has it
        def serialize(self):
            meta = b'{"classes":["a"]}'
            return (b"\x0a\x03abc" + b"\x20\xbd\x01" + b"\x29" + 8 * b"\xff" + b"\x30\x01"
                    + b"\x3a" + bytes([len(meta)]) + meta)

    assert json.loads(_app_metadata(Old())) == {"classes": ["a"]}


@pytest.mark.parametrize("transport", ["flight", "local"])
def test_batch_shapes_dtypes_and_zero_copy(server, transport):
    with server.client() as c:
        stream = c.batches("d", batch_size=16, transport=transport)
        batches = collect(stream)
    assert stream.transport == transport
    assert [len(b.labels) for b in batches] == [16, 16, 16, 13]
    b = batches[0]
    assert b.images.shape == (16, 12, 12, 3) and b.images.dtype == np.uint8
    assert b.labels.dtype == np.int64 and b.index.dtype == np.uint64
    # Over Flight a view of Arrow's memory; read in place, a buffer of its own.
    assert b.images.flags.writeable == (transport == "local")
    labels = np.concatenate([b.labels for b in batches])
    index = np.concatenate([b.index for b in batches])
    assert sorted(index.tolist()) == list(range(SAMPLES))
    assert ((labels >= 0) & (labels < 8)).all()
    # ImageFolder: samples sorted by class, then file; generated file i is
    # in class i % 8, so classes 0-4 hold 8 files and 5-7 hold 7.
    counts = [len(range(c, SAMPLES, 8)) for c in range(8)]
    assert (labels == np.repeat(np.arange(8), counts)[index.astype(np.int64)]).all()


def test_arrays_share_arrow_memory():
    """_to_batch hands out views of the record batch's buffers, no copies."""
    typ = pa.fixed_shape_tensor(pa.uint8(), [2, 2, 3], dim_names=["H", "W", "C"])
    pixels = np.arange(3 * 12, dtype=np.uint8)
    image = pa.ExtensionArray.from_storage(typ, pa.FixedSizeListArray.from_arrays(pa.array(pixels), 12))
    rb = pa.record_batch([pa.array([5, 6, 7], pa.uint64()), pa.array([0, 1, 0], pa.int64()), image],
                         names=["index", "label", "image"])
    b = _to_batch(rb)
    assert b.images.shape == (3, 2, 2, 3)
    assert b.images.ctypes.data == image.storage.values.buffers()[1].address
    assert b.labels.ctypes.data == rb.column(1).buffers()[1].address
    assert b.index.ctypes.data == rb.column(0).buffers()[1].address


def test_normalize_gives_float32_chw(new_server):
    s = new_server(pipeline="center_crop(size=8)|normalize(mean=0.5,0.5,0.5,std=0.25,0.25,0.25)").start()
    with s.client() as c:
        b = next(iter(c.batches("d", batch_size=4)))
    assert b.images.shape == (4, 3, 8, 8) and b.images.dtype == np.float32
    assert np.isfinite(b.images).all() and -2.01 <= b.images.min() and b.images.max() <= 2.01


def reference_order(n, world, drop_last):
    """DistributedSampler(shuffle=False)'s positions per rank."""
    if drop_last:
        total = n // world * world
        seq = list(range(total))
    else:
        total = math.ceil(n / world) * world
        seq = (list(range(n)) * (total // n + 1))[:total]
    return [seq[r:total:world] for r in range(world)]


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sharding(server, world, drop_last):
    bs = 7
    with server.client() as c:
        ranks = [collect(c.batches("d", batch_size=bs, rank=r, world_size=world, drop_last=drop_last,
                                   shuffle=False)) for r in range(world)]
        shuffled = [collect(c.batches("d", epoch=3, batch_size=bs, rank=r, world_size=world,
                                      drop_last=drop_last)) for r in range(world)]
    # Every rank gets the same number of batches: no_sync() never hangs.
    assert len({len(r) for r in ranks}) == 1 and len({len(r) for r in shuffled}) == 1
    for r, batches in enumerate(ranks):
        sizes = [len(b.index) for b in batches]
        assert all(s == bs for s in sizes[:-1]) and 0 < sizes[-1] <= bs
        if drop_last:
            assert sizes[-1] == bs
        got = np.concatenate([b.index for b in batches]).tolist()
        want = reference_order(SAMPLES, world, drop_last)[r]
        if drop_last:
            want = want[: len(want) // bs * bs]
        assert got == want, f"rank {r}"
        with server.client() as c:
            assert c.plan("d", batch_size=bs, rank=r, world_size=world, drop_last=drop_last,
                          shuffle=False).num_batches == len(batches)
    # Shuffled: interleaving the ranks gives one permutation of the epoch,
    # padded by wrapping around (or truncated), as DistributedSampler does.
    per_rank = [np.concatenate([b.index for b in batches]).tolist() for batches in shuffled]
    seq = [per_rank[p % world][p // world] for p in range(sum(map(len, per_rank)))]
    if drop_last:
        assert len(set(seq)) == len(seq)
        assert len(seq) % (world * bs) == 0 and len(seq) > SAMPLES - world * bs
    else:
        n = len(seq)
        assert n == math.ceil(SAMPLES / world) * world
        assert sorted(seq[:SAMPLES]) == list(range(SAMPLES))
        assert seq[SAMPLES:] == seq[: n - SAMPLES]
    assert seq != sorted(seq)


def test_start_batch_is_the_tail(server):
    with server.client() as c:
        full = collect(c.batches("d", epoch=1, batch_size=5, rank=1, world_size=2))
        for k in (0, 1, 4, len(full)):
            tail = collect(c.batches("d", epoch=1, batch_size=5, rank=1, world_size=2, start_batch=k))
            assert values_digest(tail) == values_digest(full[k:])
        with pytest.raises(loaderd.InvalidRequest, match="start_batch"):
            next(c.batches("d", batch_size=5, rank=1, world_size=2, start_batch=len(full) + 1))


@pytest.mark.parametrize("args", [
    dict(epoch=0, batch_size=16),
    dict(epoch=2, batch_size=7, rank=2, world_size=3, drop_last=True),
    dict(epoch=1, batch_size=9, shuffle=False, start_batch=2),
])
def test_same_bytes_as_go_client(server, loaderd_bin, args):
    a = dict(dict(rank=0, world_size=1, drop_last=False, shuffle=True, start_batch=0), **args)
    argv = [str(loaderd_bin), "fetch", "--addr", f"127.0.0.1:{server.port}", "--dataset", "d",
            "--epoch", str(a["epoch"]), "--batch-size", str(a["batch_size"]), "--rank", str(a["rank"]),
            "--world-size", str(a["world_size"]), f"--drop-last={str(a['drop_last']).lower()}",
            f"--shuffle={str(a['shuffle']).lower()}", "--start-batch", str(a["start_batch"]),
            "--digest", "--json"]
    go = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    with server.client() as c:
        py = collect(c.batches("d", **args))
    assert go["images"] == sum(len(b.index) for b in py)
    assert go["sha256"] == values_digest(py)


def test_actions(new_server):
    s = new_server().start()
    with s.client() as c:
        progress = []
        summary = c.precompute("d", [0, 1], progress=progress.append)
        assert summary["epochs"] == [0, 1] and summary["computed"] + summary["cached"] == 2 * SAMPLES
        assert all(p["total"] == 2 * SAMPLES and 0 <= p["done"] <= p["total"] for p in progress)
        progress.clear()
        again = c.precompute("d", 1, progress=progress.append)
        assert again["computed"] == 0 and again["cached"] == SAMPLES
        assert progress == []  # nothing to compute, nothing to report
        (ds,) = c.cache_status()["datasets"]
        assert {e["epoch"]: e["state"] for e in ds["epochs"]} == {0: "complete", 1: "complete"}
        assert c.datasets()[0].cached_epochs == [0, 1]
        st = c.evict("d", [0, 7])
        assert [e["epoch"] for e in st["datasets"][0]["epochs"]] == [1]
        assert [(e["epoch"], e["result"]) for e in st["evicted"]] == [(0, "evicted"), (7, "not_cached")]
        assert c.cache_status("d")["datasets"][0]["epochs"][0]["epoch"] == 1
        assert c.dataset_errors("d") == []
        topo = c.topology()
        assert isinstance(topo, dict) and topo
        with pytest.raises(loaderd.DatasetNotFound, match="serves: d"):
            c.precompute("nope", 0)
        with pytest.raises(loaderd.InvalidRequest, match="epochs"):
            c.evict("d", [])


BIG_BATCH = """
import json, resource, sys
import loaderd, loaderd._client as lc
c = loaderd.Client(sys.argv[1])
faults = []
# The passes after the first: gRPC's receiving threads may land in glibc
# arenas not used before (more of them when the machine is busy), whose
# first 42 MB faults in whatever the tuning; a steady state is what counts.
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    n = sum(b.images.nbytes for b in c.batches("d", batch_size=61, shuffle=False, transport="flight"))
    faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) * 4096 / n)
print(json.dumps({"state": lc.malloc_state, "faulted": min(faults[2:])}))

"""


def test_malloc_tuning_reuses_batch_memory(new_server):
    """A 42 MB batch (one message larger than glibc's 32 MiB mmap ceiling)
    streamed again faults its memory in again without the tuning, not with it."""
    import os, sys
    s = new_server(pipeline="resize(size=480,480)").start()
    out = {}
    for mode in ("", "default"):
        env = dict(os.environ, LOADERD_MALLOC=mode)
        p = subprocess.run([sys.executable, "-c", BIG_BATCH, s.address], capture_output=True, text=True,
                           env=env, check=True, cwd=os.path.dirname(os.path.dirname(loaderd.__file__)))
        out[mode] = json.loads(p.stdout)
    assert out[""]["state"] == "tuned" and out["default"]["state"].startswith("skipped")
    # Pages faulted in per byte received: about one copy's worth untuned.
    assert out["default"]["faulted"] > 0.5
    assert out[""]["faulted"] < out["default"]["faulted"] / 4, out


def test_rescan(new_server, sample_data, tmp_path):
    data = copy_data(sample_data, tmp_path / "data", 10)
    s = new_server(data=data).start()
    with s.client() as c:
        (before,) = c.rescan()
        assert before["dataset"] == "d" and before["samples"] == 10 and before["changed"] is False
        src = next(p for p in sorted(data.rglob("*.jpg")))
        shutil.copy2(src, src.with_name("zz-added.jpg"))
        # The server's own watcher may notice the new file first; either way
        # a rescan returns the new listing, and new plans follow it.
        (after,) = c.rescan("d")
        assert after["samples"] == 11 and after["fingerprint"] != before["fingerprint"]
        assert c.plan("d", batch_size=4).total_records == 11
        with pytest.raises(loaderd.DatasetNotFound):
            c.rescan("nope")
        shutil.rmtree(data)  # a root that cannot be listed: the last listing stays
        with pytest.raises(loaderd.DatasetChanged):
            c.rescan("d")
        assert c.datasets()[0].samples == 11
