"""loaderd.torch.LoaderdDataset against a real `loaderd serve`."""

from __future__ import annotations

import io
import logging
import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the [torch] extra; CI's venvs have it where it runs this file

import loaderd  # noqa: E402
from loaderd.torch import LoaderdDataset, TorchBatch  # noqa: E402
from conftest import EPOCH, SAMPLES, copy_data, values_digest  # noqa: E402


def as_numpy(batches):
    """TorchBatches as loaderd.Batch es of numpy arrays, for values_digest."""
    return [loaderd.Batch(b.images.cpu().numpy(), b.labels.cpu().numpy(),
                          b.index.numpy().view(np.uint64)) for b in batches]


def test_batches_match_the_client(server):
    ds = LoaderdDataset(server.address, "d", 8, epoch=3, rank=1, world_size=2)
    got = list(ds)
    assert len(got) == len(ds) == 4
    b = got[0]
    assert isinstance(b, TorchBatch)
    assert b.images.shape == (8, 12, 12, 3) and b.images.dtype == torch.uint8
    assert b.labels.dtype == torch.int64 and b.index.dtype == torch.int64
    with server.client() as c:
        want = list(c.batches("d", epoch=3, batch_size=8, rank=1, world_size=2))
    assert values_digest(as_numpy(got)) == values_digest(want)
    # No copy on the CPU: the tensor is the numpy array's memory.
    assert b.images.numpy().base is not None and not b.images.numpy().flags.owndata


def test_rank_and_world_size(server, monkeypatch, tmp_path):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    ds = LoaderdDataset(server.address, "d", 4, shuffle=False)
    assert (ds.rank, ds.world_size) == (2, 3)
    assert np.concatenate([b.index.numpy() for b in ds]).tolist()[:3] == [2, 5, 8]
    assert (LoaderdDataset(server.address, "d", 4, rank=0, world_size=1).rank) == 0
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        assert (ds.rank, ds.world_size) == (0, 1)  # torch.distributed over the environment
    finally:
        torch.distributed.destroy_process_group()
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert (ds.rank, ds.world_size) == (0, 1)


def test_equal_batch_counts_for_no_sync(server):
    for world in (2, 3):
        for drop_last in (False, True):
            counts = {len(list(LoaderdDataset(server.address, "d", 7, rank=r, world_size=world,
                                              drop_last=drop_last))) for r in range(world)}
            assert len(counts) == 1, (world, drop_last, counts)


def test_set_epoch(server):
    ds = LoaderdDataset(server.address, "d", 16)
    e0 = values_digest(as_numpy(ds))
    assert values_digest(as_numpy(ds)) == e0  # a second pass over the same epoch
    ds.set_epoch(1)
    assert values_digest(as_numpy(ds)) != e0


def test_resume_mid_epoch_is_byte_identical(new_server):
    """state_dict saved in one torch.save checkpoint beside the model, then a
    server restart, then the rest of the epoch: the same bytes."""
    s = new_server().start()
    kw = dict(rank=1, world_size=2, batch_size=5)
    full = list(LoaderdDataset(s.address, "d", epoch=2, **kw))

    ds = LoaderdDataset(s.address, "d", epoch=0, **kw)
    ds.set_epoch(2)
    it = iter(ds)
    head = [next(it) for _ in range(3)]
    model = torch.nn.Linear(2, 2)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "loader": ds.state_dict()}, buf)
    it.close()
    assert ds.state_dict()["epoch"] == 2 and ds.state_dict()["batch"] == 3

    s.kill()
    s.start()
    ckpt = torch.load(io.BytesIO(buf.getvalue()))
    resumed = LoaderdDataset(s.address, "d", **kw)
    resumed.load_state_dict(ckpt["loader"])
    resumed.set_epoch(2)  # the training loop's own call keeps the position
    tail = list(resumed)
    assert len(head) + len(tail) == len(full) == 7
    assert values_digest(as_numpy(head + tail)) == values_digest(as_numpy(full))
    assert resumed.state_dict()["batch"] == 7

    # An epoch saved complete resumes as complete; the next epoch starts at 0.
    done = LoaderdDataset(s.address, "d", **kw)
    done.load_state_dict(resumed.state_dict())
    assert list(done) == []
    done.set_epoch(3)
    assert len(list(done)) == 7

    with pytest.raises(loaderd.InvalidRequest, match="batch_size"):
        LoaderdDataset(s.address, "d", rank=1, world_size=2, batch_size=6).load_state_dict(ckpt["loader"])


def test_dataset_changed_mid_epoch(changing):
    """A file the epoch still needs vanishes after batch 2: DatasetChanged
    reaches the trainer after every batch delivered before it, and the
    position (state_dict) is that batch, on the old listing."""
    s, files, order = changing
    ds = LoaderdDataset(s.address, "d", 4, epoch=EPOCH, transport="flight", prefetch=1)
    got = []
    with pytest.raises(loaderd.DatasetChanged) as e:
        for b in ds:
            got.append(b)
            if len(got) == 3:
                files[order[-1]].unlink()
    state = ds.state_dict()
    assert e.value.batch == state["batch"] == len(got) == -(-SAMPLES // 4) - 1
    assert state["fingerprint"] == e.value.fingerprint is not None
    assert torch.cat([b.index for b in got]).tolist() == order[:len(got) * 4]


def test_resume_after_the_dataset_changed(new_server, sample_data, tmp_path, caplog):
    """A checkpoint keeps the listing of its batches: resumed after the
    dataset changed it raises DatasetChanged, or with on_change="continue"
    goes on from the same batch of the new listing."""
    data = copy_data(sample_data, tmp_path / "data")
    s = new_server(data=data).start()
    ds = LoaderdDataset(s.address, "d", 4, epoch=2)
    assert ds.state_dict()["fingerprint"] is None
    it = iter(ds)
    head = [next(it) for _ in range(5)]
    it.close()
    state = ds.state_dict()
    with s.client() as c:
        fp = c.plan("d", epoch=2, batch_size=4).fingerprint
        assert state["batch"] == 5 and state["fingerprint"] == fp

        sorted(data.rglob("*.jpg"))[0].unlink()
        c.rescan("d")
        new = list(c.batches("d", epoch=2, batch_size=4))
    resumed = LoaderdDataset(s.address, "d", 4)
    resumed.load_state_dict(state)
    with pytest.raises(loaderd.DatasetChanged, match="resumes at batch 5"):
        next(iter(resumed))
    assert resumed.state_dict() == state  # nothing was delivered: the position stands

    cont = LoaderdDataset(s.address, "d", 4, on_change="continue")
    cont.load_state_dict(state)
    with caplog.at_level(logging.WARNING, logger="loaderd"):
        tail = list(cont)
    assert any("continuing from batch 5" in r.getMessage() for r in caplog.records)
    assert values_digest(as_numpy(tail)) == values_digest(new[5:])
    assert cont.state_dict()["batch"] == len(new) and cont.state_dict()["fingerprint"] not in (None, fp)
    # The next epoch starts on the new listing, without a word.
    cont.set_epoch(3)
    assert cont.state_dict()["fingerprint"] is None and len(list(cont)) == len(new)
    with pytest.raises(loaderd.InvalidRequest, match="on_change"):
        LoaderdDataset(s.address, "d", 4, on_change="skip")
    del head


def test_dataloader_workers_are_refused(server):
    ds = LoaderdDataset(server.address, "d", 8)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    with pytest.raises(loaderd.InvalidRequest, match="num_workers=0"):
        list(loader)
    # num_workers=0 is the way: every sample once.
    got = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0))
    assert isinstance(got[0], TorchBatch)
    assert sorted(torch.cat([b.index for b in got]).tolist()) == list(range(SAMPLES))


@pytest.mark.parametrize("kw", [dict(batch_size=4), dict(), dict(batch_size=32)],
                         ids=["batch_size=4", "default batch_size=1", "batch_size=32, short last batch"])
def test_dataloader_with_a_batch_size_is_refused(server, kw):
    """DataLoader(ds, batch_size=N) (or its default, 1) would stack N whole
    batches into one (N, B, H, W, 3) tensor: its collation refuses, before
    stacking anything, while batch_size=None passes each batch through."""
    ds = LoaderdDataset(server.address, "d", 16 if kw.get("batch_size") == 32 else 2)

    def first_error():
        try:
            next(iter(torch.utils.data.DataLoader(ds, **kw)))
        except loaderd.InvalidRequest as e:
            return str(e)

    msg = first_error()
    assert msg and "LoaderdDataset yields whole batches" in msg and "batch_size=None" in msg
    # The abandoned iteration ended its stream and read-ahead thread with it.
    assert not any(t.name == "loaderd-read-ahead" for t in threading.enumerate())
    got = list(torch.utils.data.DataLoader(ds, batch_size=None))
    assert isinstance(got[0], TorchBatch) and got[0].images.dim() == 4
    # Collating TorchBatch es is what is refused, not other users of default_collate.
    assert torch.utils.data.default_collate([torch.zeros(2), torch.ones(2)]).shape == (2, 2)


@pytest.mark.parametrize("transport", ["flight", "local"])
def test_cpu_tensors_are_writable_and_the_batch_own(server, transport):
    """On the CPU the tensors are the batch's own memory, no copy (torch has
    no read-only tensors): writing into one changes that batch only, not
    what the server serves next."""
    want = list(LoaderdDataset(server.address, "d", 16, transport=transport))
    want = values_digest(as_numpy([TorchBatch(b.images.clone(), b.labels.clone(), b.index.clone())
                                   for b in want]))
    got = list(LoaderdDataset(server.address, "d", 16, transport=transport))
    for b in got:
        b.images[0, 0, 0, 0] = 7
        b.images.add_(1)
        b.labels[0] = 3
    assert all(int(b.images[0, 0, 0, 0]) == 8 for b in got)
    again = list(LoaderdDataset(server.address, "d", 16, transport=transport))
    assert values_digest(as_numpy(again)) == want != values_digest(as_numpy(got))


def test_reads_ahead_and_stops(server):
    ds = LoaderdDataset(server.address, "d", 2, prefetch=3)  # 31 batches
    it = iter(ds)
    next(it)
    reader = ds._reader
    # The thread fills the queue (3 batches) and holds a fourth, no more.
    end = time.monotonic() + 30
    while not (reader.queue.full() and reader.stream.yielded == 1 + 3 + 1):
        assert time.monotonic() < end, f"read ahead {reader.stream.yielded} batches"
        time.sleep(0.01)
    assert reader.stream.yielded == 5
    it.close()
    assert not reader.thread.is_alive() and ds._reader is None
    assert not any(t.name == "loaderd-read-ahead" for t in threading.enumerate())


def test_errors_reach_the_trainer(server):
    with pytest.raises(loaderd.DatasetNotFound):
        list(LoaderdDataset(server.address, "nope", 8))
    with pytest.raises(loaderd.InvalidRequest):
        LoaderdDataset(server.address, "d", 0)


def test_device_and_pin_memory(server):
    if not torch.cuda.is_available():
        with pytest.warns(UserWarning, match="pin_memory"):
            ds = LoaderdDataset(server.address, "d", 8, device="cpu", pin_memory=True)
        b = next(iter(ds))
        assert b.images.device.type == "cpu" and b.labels.device.type == "cpu"
        return
    ds = LoaderdDataset(server.address, "d", 8, device="cuda", pin_memory=True)
    got = list(ds)
    assert got[0].images.device.type == "cuda" and got[0].labels.device.type == "cuda"
    assert got[0].index.device.type == "cpu"
    want = list(LoaderdDataset(server.address, "d", 8))
    assert values_digest(as_numpy(got)) == values_digest(as_numpy(want))
