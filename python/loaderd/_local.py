"""The local transport (docs/SPEC.md §9): a trainer on the server's host
reads the cached shard files in place. Flight carries each batch's plan (for
each row: a file under the server's cache directory, the row, its index and
label); the rows are gathered from memory-mapped Arrow IPC files straight
into one batch buffer.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

from ._errors import LocalUnavailable, Unavailable, status_of

BOOT_ID = "/proc/sys/kernel/random/boot_id"
HEADER_BOOT_ID = b"loaderd-boot-id"
HEADER_CACHE_TOKEN = b"loaderd-cache-token"

#: allocate(shape, dtype) -> a C-contiguous, writeable numpy array
Allocate = Callable[[Tuple[int, ...], np.dtype], np.ndarray]


class NoLocal(Exception):
    """Why a stream cannot read the cache in place.

    ``warn`` is True when the server is on this host but its cache cannot be
    read here (a setup to fix), False when local reading is simply not on
    offer (another host, an older server)."""

    def __init__(self, reason: str, warn: bool = False):
        super().__init__(reason)
        self.reason, self.warn = reason, warn


class Door:
    """How this process reads a server's cache: where it sees the cache
    directory, and the headers proving it may (boot id and token)."""

    def __init__(self, cache_dir: str, headers: List[Tuple[bytes, bytes]]):
        self.cache_dir, self.headers = cache_dir, headers


def open_door(conn: flight.FlightClient, options: flight.FlightCallOptions,
              cache_dir: Optional[str], error: Callable[[BaseException], Exception]) -> Door:
    """Asks the server where its cache is (the ``local-info`` action) and
    checks that this process is on its host and can read the cache.

    Raises NoLocal with the reason when it cannot; other failures of the
    call (the server unreachable, say) as ``error`` turns them.
    """
    try:
        results = list(conn.do_action(flight.Action("local-info", b""), options=options))
    except (pa.ArrowException, OSError) as e:
        code, msg = status_of(e)
        if code == "FAILED_PRECONDITION":
            raise NoLocal(_reason(msg)) from None
        if code in ("UNIMPLEMENTED", "INVALID_ARGUMENT"):
            raise NoLocal(f"the server serves no local streams ({msg})") from None
        raise error(e) from None
    try:
        info = json.loads(results[0].body.to_pybytes())
        server_dir, token_file, boot = str(info["cache_dir"]), str(info["token_file"]), str(info["boot_id"])
    except (IndexError, KeyError, ValueError, TypeError):
        raise NoLocal("the server's local-info answer is not understood") from None
    if posixpath.isabs(token_file) or ".." in token_file.split("/"):
        raise NoLocal(f"the server's token file {token_file!r} is not within its cache")
    try:
        with open(BOOT_ID) as f:
            ours = f.read().strip()
    except OSError as e:
        raise NoLocal(f"this host's boot id: {e}") from None
    if not boot or boot != ours:
        raise NoLocal(f"the server is on another host (its boot id {boot!r}, ours {ours!r})")
    where = cache_dir or server_dir
    try:
        with open(os.path.join(where, *token_file.split("/")), "rb") as f:
            token = f.read().strip()
    except OSError as e:
        raise NoLocal(f"cannot read the server's cache {where}: {e} (the server's --cache-group, "
                      "or cache_dir= where it is mounted here)", warn=True) from None
    return Door(where, [(HEADER_BOOT_ID, boot.encode()), (HEADER_CACHE_TOKEN, token)])


def _reason(msg: str) -> str:
    """The reason a FailedPrecondition of the local transport gives."""
    key = "local transport unavailable: "
    i = msg.find(key)
    return msg[i + len(key):] if i >= 0 else msg


def is_refusal(exc: BaseException) -> Optional[str]:
    """The reason, when exc is the server refusing a local stream."""
    code, msg = status_of(exc)
    if code == "FAILED_PRECONDITION" and "local transport unavailable" in msg:
        return _reason(msg)
    return None


def image_schema(plan_schema: pa.Schema) -> Tuple[pa.Schema, pa.DataType, int]:
    """The ordinary stream's schema a plan schema carries, its image column's
    type and the bytes of one image."""
    md = plan_schema.metadata or {}
    try:
        raw = base64.b64decode(md[b"loaderd.image_schema"])
        schema = pa.ipc.open_stream(raw).schema
        row_bytes = int(md[b"loaderd.row_bytes"])
    except (KeyError, ValueError, pa.ArrowException) as e:
        raise LocalUnavailable(f"the server's plan schema is not understood: {e}") from None
    return schema, schema.field("image").type, row_bytes


class Gatherer:
    """Assembles a local stream's batches from the files its plans name.

    Each file is mapped once (``pyarrow.memory_map``) and opened as an
    Arrow IPC file (``pyarrow.ipc.open_file``); a row is copied from that
    view into the batch buffer ``allocate`` gives: one copy, from the page
    cache.
    """

    def __init__(self, cache_dir: str, image_type: pa.DataType, allocate: Optional[Allocate]):
        self.cache_dir = cache_dir
        self.image_type = image_type
        storage = getattr(image_type, "storage_type", None)
        if storage is None or not hasattr(image_type, "shape"):
            raise LocalUnavailable(f"image type {image_type}: not an arrow.fixed_shape_tensor "
                                   f"(pyarrow {pa.__version__}; loaderd needs pyarrow >= 14)")
        self.shape = tuple(int(d) for d in image_type.shape)
        self.dtype = pa.array([], type=storage.value_type).to_numpy(zero_copy_only=False).dtype
        self.allocate: Allocate = allocate or (lambda shape, dtype: np.empty(shape, dtype))
        self.files: Dict[str, Tuple[pa.MemoryMappedFile, np.ndarray]] = {}

    def _rows_of(self, name: str) -> np.ndarray:
        """The image rows of the file a plan names, (N, *shape), mapped."""
        got = self.files.get(name)
        if got is not None:
            return got[1]
        parts = name.split("/")
        if not name or name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
            raise LocalUnavailable(f"a plan names {name!r}, not a path within the cache")
        path = os.path.join(self.cache_dir, *parts)
        try:
            mm = pa.memory_map(path, "r")
            rb = pa.ipc.open_file(mm).get_batch(0)
        except FileNotFoundError:
            # The stream's lease is gone: its server died (a new one removes
            # what the last left). Retryable: the stream resumes.
            msg = f"a plan's file {path} is gone: the server's stream ended"
            raise Unavailable(msg, code="UNAVAILABLE", server_message=msg) from None
        except (OSError, pa.ArrowException) as e:
            raise LocalUnavailable(f"a plan's file {path}: {e}") from None
        col = rb.column(rb.schema.get_field_index("image"))
        if col.type != self.image_type:
            raise LocalUnavailable(f"{path}: image column is {col.type}, want {self.image_type}")
        rows = col.to_numpy_ndarray()  # (N, *shape), a view of the mapping
        self.files[name] = (mm, rows)
        return rows

    def batch(self, plan: pa.RecordBatch) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images, labels, index) of one plan record batch."""
        n = plan.num_rows
        files = plan.column(plan.schema.get_field_index("file")).to_pylist()
        rows = plan.column(plan.schema.get_field_index("row")).to_numpy()
        labels = plan.column(plan.schema.get_field_index("label")).to_numpy().copy()
        index = plan.column(plan.schema.get_field_index("index")).to_numpy().copy()
        out = self.allocate((n,) + self.shape, self.dtype)
        for i in range(n):
            src = self._rows_of(files[i])
            r = int(rows[i])
            if not 0 <= r < len(src):
                raise LocalUnavailable(f"a plan names row {r} of {files[i]}, which has {len(src)}")
            out[i] = src[r]
        return out, labels, index

    def close(self) -> None:
        for mm, _ in self.files.values():
            mm.close()
        self.files = {}


def read_exchange(conn: flight.FlightClient, ticket: bytes, options: flight.FlightCallOptions,
                  started: Callable[[Any], None]) -> Iterator[pa.RecordBatch]:
    """The plans of a local ticket, over DoExchange: yields each plan record
    batch until the end (a plan of no rows), then half-closes (the server
    then releases the files) and reads the call to its end, which raises the
    stream's error, if any, after its batches. ``started`` is given the
    exchange's reader (so that it can be cancelled)."""
    desc = flight.FlightDescriptor.for_command(ticket)
    writer, reader = conn.do_exchange(desc, options)
    started(reader)
    try:
        while True:
            chunk = reader.read_chunk()  # StopIteration here: ended without its end
            if chunk.data is None or chunk.data.num_rows == 0:
                break
            yield chunk.data
        writer.done_writing()
        while True:  # nothing more is expected: the call's status
            try:
                reader.read_chunk()
            except StopIteration:
                break
    finally:
        try:
            writer.close()
        except (pa.ArrowException, OSError):
            pass  # the call's own error, if any, was raised by the reader
