"""Every error of loaderd.Client, each from a real server where one can cause it."""

from __future__ import annotations

import logging
import os
import time

import pyarrow.flight as flight
import pytest

import loaderd
from loaderd._errors import status_of, translate
from conftest import copy_data, free_port, values_digest

BIG = "random_resized_crop(size=224)|hflip(p=0.5)"  # 150 KB a row: a cold stream takes a while


def test_unreachable_fails_at_once():
    c = loaderd.Client(f"127.0.0.1:{free_port()}")
    t = time.monotonic()
    with pytest.raises(loaderd.Unavailable, match="cannot reach loaderd.*--listen") as e:
        c.datasets()
    with pytest.raises(loaderd.Unavailable):
        next(c.batches("d"))  # never connected: no reconnecting
    assert time.monotonic() - t < 10
    assert e.value.code == "UNAVAILABLE" and isinstance(e.value, ConnectionError)


@pytest.mark.parametrize("address", ["nonsense", "http://127.0.0.1:1", ""])
def test_bad_address(address):
    with pytest.raises(loaderd.InvalidRequest, match="address"):
        loaderd.Client(address)


def test_request_errors_name_the_field(server):
    with server.client() as c:
        with pytest.raises(loaderd.DatasetNotFound, match=r"no dataset 'x' \(it serves: d\)") as e:
            next(c.batches("x"))
        assert e.value.code == "NOT_FOUND" and isinstance(e.value, LookupError)
        for kw, field in [(dict(rank=2, world_size=2), "rank"), (dict(batch_size=0), "batch_size"),
                          (dict(epoch=-1), "epoch"), (dict(gpu="no-such-gpu"), "gpu")]:
            with pytest.raises(loaderd.InvalidRequest, match=field) as e:
                next(c.batches("d", **kw))
            assert e.value.code == "INVALID_ARGUMENT" and isinstance(e.value, ValueError)


def test_resource_exhausted(new_server):
    s = new_server(args=["--max-streams", "1"]).start()
    with s.client() as c:
        first = c.batches("d", batch_size=1)
        next(first)  # holds the only stream
        with pytest.raises(loaderd.ResourceExhausted, match="--max-streams"):
            next(c.batches("d", batch_size=1))
        first.close()


def test_data_loss(new_server, sample_data, tmp_path):
    data = copy_data(sample_data, tmp_path / "data", 10)
    (data / "class_00" / "zz-corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    s = new_server(data=data, args=["--on-error", "fail"]).start()
    with s.client() as c:
        with pytest.raises(loaderd.DataLoss, match="zz-corrupt.jpg.*loaderd scan"):
            list(c.batches("d", batch_size=4))
    s2 = new_server(data=data).start()  # substitute: the stream goes through, the file is listed
    with s2.client() as c:
        assert sum(len(b.index) for b in c.batches("d", batch_size=4)) == 11
        (err,) = c.dataset_errors("d")
        assert err["path"].endswith("zz-corrupt.jpg") and err["reason"]


def test_server_error_and_status_parsing():
    e = translate(flight.FlightInternalError("Flight returned internal error, with message: boom. "
                                             "gRPC client debug context: UNKNOWN:..."), "grpc://h:1")
    assert isinstance(e, loaderd.ServerError) and e.server_message == "boom" and e.code == "INTERNAL"
    assert status_of(ValueError("gRPC returned precondition failed error, with message: x")) == \
        ("FAILED_PRECONDITION", "x")
    assert status_of(OSError("gRPC returned data loss error, with message: y. Detail: Internal")) == \
        ("DATA_LOSS", "y")
    assert status_of(flight.FlightUnavailableError("no words")) == ("UNAVAILABLE", "no words")
    # A file the server cannot read is not an outage to wait out.
    e = translate(flight.FlightUnavailableError(
        "Flight returned unavailable error, with message: loader: cannot read /d/a.jpg (sample 3, "
        "3 attempts): permission denied"), "grpc://h:1")
    assert isinstance(e, loaderd.Unavailable) and not e.retryable and "loaderd scan" in str(e)
    assert translate(flight.FlightUnavailableError("Flight returned unavailable error, with message: "
                                                   "Socket closed"), "grpc://h:1").retryable


def test_auth(new_server):
    s = new_server(token="s3cret").start()
    with loaderd.Client(s.address) as c:
        with pytest.raises(loaderd.Unauthenticated, match="none was given.*--auth-token-file"):
            c.datasets()
    with loaderd.Client(s.address, token="wrong") as c:
        with pytest.raises(loaderd.Unauthenticated, match="not the server's") as e:
            next(c.batches("d"))
        assert isinstance(e.value, PermissionError)
    with s.client() as c:
        assert sum(len(b.index) for b in c.batches("d", batch_size=16)) == 61
        assert c.cache_status("d")["datasets"]


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, from Go's own generate_cert.go."""
    import subprocess
    d = tmp_path_factory.mktemp("tls")
    goroot = subprocess.run(["go", "env", "GOROOT"], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["go", "run", os.path.join(goroot, "src/crypto/tls/generate_cert.go"),
                    "--host", "127.0.0.1", "--ca"], cwd=d, check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_tls(new_server, tls_cert):
    s = new_server(tls=tls_cert, token="t").start()
    plain = s.address.replace("grpc+tls://", "")
    for certs in (tls_cert[0], tls_cert[0].read_bytes(), tls_cert[0].read_text()):
        with loaderd.Client(plain, token="t", tls_root_certs=certs) as c:  # host:port + certs: TLS
            assert c.location.startswith("grpc+tls://")
            assert sum(len(b.index) for b in c.batches("d", batch_size=16)) == 61
    with loaderd.Client(s.address, token="t") as c:  # the system's roots do not know this CA
        with pytest.raises(loaderd.Unavailable, match="TLS"):
            c.datasets()
    with loaderd.Client("grpc://" + plain, token="t") as c:  # plain text to a TLS server
        with pytest.raises(loaderd.Unavailable):
            c.datasets()


def test_server_restart_mid_stream(new_server, caplog):
    """A stream that breaks off reconnects and resumes where it stopped: the
    same bytes as an uninterrupted stream."""
    s = new_server(pipeline=BIG).start()
    with s.client() as c, caplog.at_level(logging.WARNING, logger="loaderd"):
        stream = c.batches("d", batch_size=4)
        got = [next(stream)]  # epoch 0 is cold: the rest is still being computed
        s.kill()
        s.start()
        got += list(stream)
        assert any("broke off" in r.getMessage() for r in caplog.records), "the stream was not interrupted"
        want = list(c.batches("d", batch_size=4))
    assert len(got) == len(want) == 16
    assert values_digest(got) == values_digest(want)


def test_gives_up_reconnecting(new_server):
    s = new_server(pipeline=BIG).start()
    with s.client(retry_timeout=0.5) as c:
        stream = c.batches("d", batch_size=4)
        next(stream)
        s.kill()
        t = time.monotonic()
        with pytest.raises(loaderd.Unavailable, match="gave up reconnecting after 0.5 s"):
            list(stream)
        assert time.monotonic() - t < 10
