"""One Python client of `loaderd bench`'s warm phase, in a process of its own.

    python pyclient.py --addr HOST:PORT --dataset NAME --batch-size B \
        --passes P --repeat R --client pyarrow|loaderd|dataset [--transport flight|local]

Streams rank 0 of world size 1 of the cached epoch 0, P passes per timed
run, after one untimed pass, and prints one JSON line: images/s and GB/s
(image bytes, 1e9/s) of each run, CPU seconds of this process per GB, and
the versions in use. A client that cannot run prints {"error": ...} and
exits 3.

  pyarrow  pyarrow.flight.FlightClient, as a trainer without the package
           would use it: GetFlightInfo, DoGet, each batch's image column
           as a numpy array (to_numpy_ndarray, no copy).
  loaderd  loaderd.Client.batches: the same, through the package.
  dataset  loaderd.torch.LoaderdDataset: torch tensors on the CPU, read
           ahead on a background thread.

--transport (loaderd and dataset): flight (default), or local: the rows
read from the server's cache files in place (docs/SPEC.md §9).
"""

import argparse
import json
import platform
import resource
import sys
import time


def fail(msg):
    print(json.dumps({"error": msg}))
    sys.exit(3)


def missing(e, what):
    """The error of a client whose imports failed: what this Python lacks,
    and how to install it (the loaderd package brings pyarrow and numpy)."""
    name = getattr(e, "name", None)
    lacks = f"{sys.executable} cannot import {name or what} ({e})"
    if name is None and "numpy" in str(e).lower():  # pyarrow refuses the numpy installed
        return (f"{lacks}: pyarrow 26 and later need numpy 2; beside numpy 1 install "
                "pip install 'pyarrow>=14,<26', or pass --python another Python")
    need = ("the loaderd package with torch: pip install './python[torch]'" if what == "torch"
            else "the loaderd package and its dependencies (pyarrow, numpy): pip install ./python")
    return f"{lacks}; the Python client rows need {need} with that Python, or pass --python the Python of a venv that has them"


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--passes", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--client", choices=["pyarrow", "loaderd", "dataset"], required=True)
    ap.add_argument("--transport", choices=["flight", "local"], default="flight")
    a = ap.parse_args()
    versions = {"python": platform.python_version()}
    try:
        import numpy
        import pyarrow
        import pyarrow.flight as flight
        versions.update(pyarrow=pyarrow.__version__, numpy=numpy.__version__)
    except ImportError as e:
        fail(missing(e, "pyarrow"))

    if a.client == "pyarrow":
        client = flight.FlightClient(f"grpc://{a.addr}")
        desc = flight.FlightDescriptor.for_command(json.dumps(
            {"dataset": a.dataset, "epoch": 0, "batch_size": a.batch_size}))

        def one_pass():
            images = nbytes = 0
            info = client.get_flight_info(desc)
            for ep in info.endpoints:
                for chunk in client.do_get(ep.ticket):
                    x = chunk.data.column("image").to_numpy_ndarray()
                    images += x.shape[0]
                    nbytes += x.nbytes
            return images, nbytes
    else:
        try:
            import loaderd
            versions["loaderd"] = loaderd.__version__
        except ImportError as e:
            fail(missing(e, "loaderd"))
        if a.client == "loaderd":
            client = loaderd.Client(a.addr)

            def one_pass():
                images = nbytes = 0
                for b in client.batches(a.dataset, 0, a.batch_size, transport=a.transport):
                    images += len(b.labels)
                    nbytes += b.images.nbytes
                return images, nbytes
        else:
            try:
                import torch
                from loaderd.torch import LoaderdDataset
                versions["torch"] = torch.__version__
            except ImportError as e:
                fail(missing(e, "torch"))
            ds = LoaderdDataset(a.addr, a.dataset, a.batch_size, transport=a.transport)

            def one_pass():
                images = nbytes = 0
                for b in ds:
                    images += len(b.labels)
                    nbytes += b.images.numel() * b.images.element_size()
                return images, nbytes

    try:
        one_pass()  # warm-up: connections, imports, first allocations
        runs, gbs, cpu = [], [], []
        for _ in range(a.repeat):
            c0, t0 = cpu_seconds(), time.perf_counter()
            images = nbytes = 0
            for _ in range(a.passes):
                i, n = one_pass()
                images += i
                nbytes += n
            dt, dc = time.perf_counter() - t0, cpu_seconds() - c0
            runs.append(images / dt)
            gbs.append(nbytes / 1e9 / dt)
            cpu.append(dc / (nbytes / 1e9))
    except Exception as e:  # a failed stream is the row's error, not a crash of the bench
        fail(f"{a.client}: {type(e).__name__}: {e}")
    if a.client == "loaderd" or a.client == "dataset":
        import loaderd._client as lc
        versions["malloc"] = lc.malloc_state
    print(json.dumps({"client": a.client, "transport": a.transport, "images_per_sec": runs, "gb_per_sec": gbs,
                      "cpu_s_per_gb": cpu, "images": images, "bytes": nbytes, "versions": versions}))


if __name__ == "__main__":
    main()
