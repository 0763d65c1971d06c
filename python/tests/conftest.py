"""Fixtures: a real loaderd, built once per session from this checkout and
started on generated data.

LOADERD_BIN names a loaderd binary to use instead of building one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
try:
    import loaderd  # installed (pip install ./python): test what was installed
except ImportError:
    sys.path.insert(0, str(REPO / "python"))
    import loaderd


def pytest_report_header(config):
    import numpy
    import pyarrow
    try:
        import torch
        tv = torch.__version__
    except ImportError:
        tv = "not installed"
    return (f"loaderd {loaderd.__version__} from {Path(loaderd.__file__).parent}; "
            f"pyarrow {pyarrow.__version__}, numpy {numpy.__version__}, torch {tv}")

# Small crops keep every test fast; the sizes are odd on purpose.
PIPELINE = "random_resized_crop(size=12,scale=0.08:1,ratio=0.75:1.3333)|hflip(p=0.5)"
SAMPLES = 61  # prime: every world size pads or truncates
SHARD = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `loaderd serve` child process on 127.0.0.1."""

    def __init__(self, binary: Path, workdir: Path, data: Path, *, name: str = "d",
                 pipeline: str = PIPELINE, args: Iterable[str] = (), token: Optional[str] = None,
                 tls: Optional[tuple] = None):
        self.binary, self.workdir, self.data, self.name = binary, workdir, data, name
        self.pipeline, self.extra, self.token, self.tls = pipeline, list(args), token, tls
        self.cache = workdir / "cache"
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    @property
    def address(self) -> str:
        scheme = "grpc+tls" if self.tls else "grpc"
        return f"{scheme}://127.0.0.1:{self.port}"

    def argv(self) -> List[str]:
        argv = [str(self.binary), "serve", "--data", f"{self.name}={self.data}",
                "--pipeline", self.pipeline, "--cache-dir", str(self.cache),
                "--shard-size", str(SHARD), "--listen", f"127.0.0.1:{self.port}",
                "--log-level", "warn", "--drain-timeout", "2s", *self.extra]
        if self.token is not None:
            tok = self.workdir / "token"
            tok.write_text(self.token + "\n")
            argv += ["--auth-token-file", str(tok)]
        if self.tls:
            argv += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        return argv

    def start(self, deadline: float = 60.0) -> "Server":
        self.starts += 1
        log = open(self.workdir / f"serve-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.wait_ready(deadline)
        return self

    def log(self) -> str:
        return (self.workdir / f"serve-{self.starts}.log").read_text(errors="replace")

    def wait_ready(self, deadline: float) -> None:
        """Polls ListFlights until the server answers (any answer but
        Unavailable), the process exits, or the deadline passes."""
        certs = self.tls[0] if self.tls else None
        end = time.monotonic() + deadline
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"loaderd serve exited with {self.proc.returncode}:\n{self.log()}")
            with loaderd.Client(self.address, token=self.token, tls_root_certs=certs) as c:
                try:
                    c.datasets()
                    return
                except loaderd.Unavailable:
                    pass
                except loaderd.Error:
                    return  # it answers
            if time.monotonic() > end:
                raise RuntimeError(f"loaderd serve not ready after {deadline}s:\n{self.log()}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def client(self, **kw) -> loaderd.Client:
        if self.token is not None:
            kw.setdefault("token", self.token)
        if self.tls:
            kw.setdefault("tls_root_certs", self.tls[0])
        return loaderd.Client(self.address, **kw)


@pytest.fixture(scope="session")
def loaderd_bin(tmp_path_factory) -> Path:
    """The loaderd binary: $LOADERD_BIN, or `go build ./cmd/loaderd` of this checkout."""
    if os.environ.get("LOADERD_BIN"):
        return Path(os.environ["LOADERD_BIN"])
    out = tmp_path_factory.mktemp("bin") / "loaderd"
    # The Makefile's CGO_CFLAGS, so that this build shares its Go build cache.
    env = dict(os.environ, CGO_CFLAGS=os.environ.get("CGO_CFLAGS", "-O2 -g -Wno-deprecated-declarations"))
    subprocess.run(["go", "build", "-o", str(out), "./cmd/loaderd"], cwd=REPO, env=env, check=True)
    return out


@pytest.fixture(scope="session")
def sample_data(loaderd_bin, tmp_path_factory) -> Path:
    """SAMPLES JPEGs in 8 classes, generated by `loaderd demo` (bench.GenerateDataset)."""
    d = tmp_path_factory.mktemp("demo")
    subprocess.run([str(loaderd_bin), "demo", "--dir", str(d), "--images", str(SAMPLES),
                    "--listen", "127.0.0.1:0"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=300)
    return d / "data"


@pytest.fixture(scope="session")
def server(loaderd_bin, sample_data, tmp_path_factory):
    """One plain server for the tests that only read."""
    s = Server(loaderd_bin, tmp_path_factory.mktemp("serve"), sample_data).start()
    yield s
    s.stop()


@pytest.fixture
def new_server(loaderd_bin, sample_data, tmp_path):
    """A factory of servers of the test's own (stopped at its end)."""
    made: List[Server] = []

    def make(data: Optional[Path] = None, **kw) -> Server:
        wd = tmp_path / f"server{len(made)}"
        wd.mkdir()
        s = Server(loaderd_bin, wd, data or sample_data, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop(signal.SIGKILL)


def copy_data(src: Path, dst: Path, n: Optional[int] = None) -> Path:
    """Copies (the first n files of) an ImageFolder tree."""
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    for p in files[:n]:
        q = dst / p.relative_to(src)
        q.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, q)
    return dst


def values_digest(batches) -> str:
    """SHA-256 of a stream's values as `loaderd fetch --digest` computes it
    (arrowio.WriteValues): per batch, index (uint64 LE), label (int64 LE),
    then the image bytes."""
    h = hashlib.sha256()
    for b in batches:
        h.update(b.index.astype("<u8", copy=False).tobytes())
        h.update(b.labels.astype("<i8", copy=False).tobytes())
        h.update(b.images.tobytes())
    return h.hexdigest()


# 768 KB a row (a 440×318 demo image padded with zeros): the flow-control
# windows hold a few batches of 4, so a stream paused at batch 3 has not yet
# read the files its last batches need, whatever the machine's speed.
WIDE = "center_crop(size=512)"
EPOCH = 3


@pytest.fixture
def changing(new_server, sample_data, server, tmp_path):
    """A server of its own over a copy of the sample data (WIDE rows, one
    worker, no prefetch), the copy's files in index order, and the order
    of EPOCH's samples (the session server's: the order depends on the seed,
    the epoch and the sample count alone)."""
    data = copy_data(sample_data, tmp_path / "data")
    files = sorted(p for p in data.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert len(files) == SAMPLES
    with server.client() as c:
        order = [int(i) for b in c.batches("d", epoch=EPOCH, batch_size=16) for i in b.index]
    s = new_server(data=data, pipeline=WIDE, args=["--workers", "1", "--prefetch-epochs", "0"]).start()
    return s, files, order
