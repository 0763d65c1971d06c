"""A dataset changing under a stream (docs/SPEC.md §4), from a real server:
before the epoch's first batch the client follows the new listing by
itself; once batches were delivered the rest of the epoch cannot follow the
old listing, and the stream raises DatasetChanged naming the batch reached,
or with on_change="continue" goes on from that batch of the new listing."""

from __future__ import annotations

import logging
import os

import pytest

import loaderd
from loaderd._client import BatchStream
from conftest import EPOCH, SAMPLES, copy_data, values_digest

B = 4
BATCHES = -(-SAMPLES // B)  # 16


def stream(c, **kw):
    return c.batches("d", epoch=EPOCH, batch_size=B, transport="flight", **kw)


def test_file_vanishing_mid_epoch_raises(changing):
    """The newcomer's case: a file the stream still needs is removed after
    batch 2. The stream ends with DatasetChanged naming the batch reached
    and the file; every batch delivered came from the old listing."""
    s, files, order = changing
    victim = files[order[-1]]  # needed by the epoch's last batch
    with s.client() as c:
        st = stream(c)
        got = [next(st) for _ in range(3)]
        victim.unlink()
        with pytest.raises(loaderd.DatasetChanged) as e:
            for b in st:
                got.append(b)
    assert e.value.batch == st.yielded == len(got) == BATCHES - 1
    assert e.value.epoch == EPOCH and e.value.fingerprint == st.fingerprint
    msg = str(e.value)
    assert f"when {BATCHES - 1} of the {BATCHES} batches of epoch {EPOCH}" in msg
    assert victim.relative_to(victim.parents[1]).as_posix() in msg and "vanished" in msg
    assert 'on_change="continue"' in msg
    delivered = [int(i) for b in got for i in b.index]
    assert delivered == order[:len(delivered)]  # the old listing's, no sample twice


def test_file_vanishing_mid_epoch_continue(changing, caplog):
    """on_change="continue": a warning names the batch, the rest comes from
    the new listing, and the epoch keeps its batch count (the new listing
    has 15 batches: batch 15 is its batch 0 again)."""
    s, files, order = changing
    victim = files[order[-1]]
    with s.client() as c, caplog.at_level(logging.INFO, logger="loaderd"):
        st = stream(c, on_change="continue")
        old = None
        got = []
        for b in st:
            got.append(b)
            old = old or st.fingerprint
            if len(got) == 3:
                victim.unlink()
        new = list(stream(c))
    assert len(got) == st.yielded == st.num_batches == BATCHES and len(new) == BATCHES - 1
    assert st.fingerprint != old
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"when {BATCHES - 1} of the {BATCHES} batches of epoch {EPOCH}" in warnings[0]
    assert "continuing from batch 0 of the new listing" in warnings[0]
    assert "coverage is no longer exact" in warnings[0]
    assert [int(i) for b in got[:-1] for i in b.index] == order[:-1]
    assert values_digest(got[-1:]) == values_digest(new[:1])


@pytest.mark.parametrize("on_change", ["raise", "continue"])
def test_reconnect_to_a_new_listing(changing, on_change, caplog):
    """A stream that breaks off (server killed) while a file is removed: on
    reconnecting it finds the new listing, and cannot go on where it stopped
    as if nothing happened."""
    s, files, order = changing
    with s.client() as c, caplog.at_level(logging.WARNING, logger="loaderd"):
        st = stream(c, on_change=on_change)
        got = [next(st) for _ in range(3)]
        s.kill()
        files[order[-1]].unlink()
        s.start()
        if on_change == "raise":
            with pytest.raises(loaderd.DatasetChanged, match="found when the stream reconnected") as e:
                for b in st:
                    got.append(b)
            assert e.value.batch == st.yielded == len(got) < BATCHES
            assert [int(i) for b in got for i in b.index] == order[:len(got) * B]
            return
        got += list(st)
        new = list(stream(c))
    k = next(i for i, r in enumerate(caplog.records) if "continuing from batch" in r.getMessage())
    msg = caplog.records[k].getMessage()
    at = int(msg.split("continuing from batch ")[1].split()[0])
    assert 3 <= at < BATCHES - 1 and len(got) == BATCHES
    assert [int(i) for b in got[:at] for i in b.index] == order[:at * B]
    assert values_digest(got[at:]) == values_digest(new[at:] + new[:1])


@pytest.mark.parametrize("transport", ["flight", "local"])
def test_stale_ticket_before_the_first_batch(new_server, sample_data, tmp_path, caplog, monkeypatch,
                                             transport):
    """A ticket that goes stale between its plan and the first read is no
    change for the epoch: the stream plans again on the new listing without
    a warning. A second change before the first batch raises."""
    data = copy_data(sample_data, tmp_path / "data", 20)
    victim = sorted(data.rglob("*.jpg"))[3]
    s = new_server(data=data).start()
    opened, changes = [], [1]
    real = BatchStream._open

    def touch_after_open(self, req):
        plan, batches = real(self, req)
        opened.append(plan.fingerprint)
        if len(opened) <= changes[0]:  # the ticket just issued is stale
            st = victim.stat()
            os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9 * len(opened)))
            self.client.rescan("d")
        return plan, batches

    monkeypatch.setattr(BatchStream, "_open", touch_after_open)
    with s.client() as c, caplog.at_level(logging.INFO, logger="loaderd"):
        st = c.batches("d", batch_size=6, transport=transport)
        got = list(st)
        assert st.transport == transport and len(opened) == 2 and opened[0] != opened[1]
        assert st.fingerprint == opened[1] and st.yielded == len(got) == 4
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("before the first batch" in r.getMessage() for r in caplog.records)
        changes[0] = 4
        with pytest.raises(loaderd.DatasetChanged, match="changed on the server") as e:
            list(c.batches("d", batch_size=6, transport=transport))
        assert e.value.code == "FAILED_PRECONDITION" and e.value.batch is None
    monkeypatch.undo()
    with s.client() as c:
        assert values_digest(got) == values_digest(c.batches("d", batch_size=6))


@pytest.mark.parametrize("transport", ["flight", "local"])
def test_resume_checks_the_listing(new_server, sample_data, tmp_path, caplog, transport):
    """A resume that names the listing of its first batches (fingerprint=)
    goes on only on that listing; after a change it raises, or continues
    from the same batch of the new listing with a warning."""
    data = copy_data(sample_data, tmp_path / "data")
    s = new_server(data=data).start()
    with s.client() as c:
        full = list(c.batches("d", epoch=EPOCH, batch_size=B, transport=transport))
        head = c.batches("d", epoch=EPOCH, batch_size=B, transport=transport)
        got = [next(head) for _ in range(5)]
        fp = head.fingerprint
        head.close()
        # Unchanged: the rest, byte for byte.
        tail = c.batches("d", epoch=EPOCH, batch_size=B, start_batch=5, fingerprint=fp, transport=transport)
        assert values_digest(got + list(tail)) == values_digest(full)

        sorted(data.rglob("*.jpg"))[0].unlink()
        c.rescan("d")
        with pytest.raises(loaderd.DatasetChanged, match=r"resumes at batch 5") as e:
            next(c.batches("d", epoch=EPOCH, batch_size=B, start_batch=5, fingerprint=fp, transport=transport))
        assert e.value.batch == 5 and e.value.fingerprint == fp
        new = list(c.batches("d", epoch=EPOCH, batch_size=B, transport=transport))
        with caplog.at_level(logging.WARNING, logger="loaderd"):
            rest = c.batches("d", epoch=EPOCH, batch_size=B, start_batch=5, fingerprint=fp,
                             transport=transport, on_change="continue")
            tail = list(rest)
        assert rest.fingerprint != fp
        # A resume knows no count but the server's: the new listing's.
        assert len(new) == BATCHES - 1 and len(tail) == len(new) - 5
        assert values_digest(tail) == values_digest(new[5:])
        assert any("continuing from batch 5 of the new listing" in r.getMessage() for r in caplog.records)
        # Without fingerprint= a resume takes the listing served now.
        assert values_digest(c.batches("d", epoch=EPOCH, batch_size=B, start_batch=5,
                                       transport=transport)) == values_digest(new[5:])
        with pytest.raises(loaderd.InvalidRequest, match="on_change"):
            c.batches("d", on_change="ignore")
