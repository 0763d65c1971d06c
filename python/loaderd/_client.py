"""loaderd's Flight API (docs/SPEC.md §4) from Python, over pyarrow.flight."""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import platform
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generator, Iterable, Iterator, List, NamedTuple, Optional, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

from . import _local
from ._errors import DatasetChanged, DatasetNotFound, Error, InvalidRequest, LocalUnavailable, Unavailable, translate

__all__ = ["Client", "Batch", "Plan", "DatasetInfo", "BatchStream", "ON_CHANGE"]

log = logging.getLogger("loaderd")

#: What a stream may do when its dataset changes mid-epoch (Client.batches' on_change).
ON_CHANGE = ("raise", "continue")

# Flight's "use the connection you came in on" location (Flight ≥ 14).
_REUSE = "arrow-flight-reuse-connection://?"

# How glibc's malloc was set up for streaming (see _tune_malloc): None before
# the first stream, then "tuned" or why not.
malloc_state: Optional[str] = None
_malloc_lock = threading.Lock()


def _tune_malloc() -> None:
    """Keeps freed large blocks in glibc's heap, once per process.

    gRPC hands each received message to Arrow as one contiguous buffer as
    large as the batch (38 MB for 256 × 224×224×3), which glibc serves from a
    fresh mmap above its 32 MiB ceiling and unmaps when the batch is freed:
    every batch then pays page faults and the kernel zeroing 38 MB. Raising
    M_MMAP_THRESHOLD and M_TRIM_THRESHOLD to 1 GiB lets the next batch reuse
    the memory; measured on a cached epoch, the client's CPU per GB fell from
    0.83 to 0.32 s. The cost: up to 1 GiB of freed memory stays with the
    process. Skipped off glibc, when the environment sets malloc tunables
    itself, or with LOADERD_MALLOC=default.
    """
    global malloc_state
    with _malloc_lock:
        if malloc_state is not None:
            return
        malloc_state = "tuned"
        if os.environ.get("LOADERD_MALLOC", "").lower() in ("default", "0", "off"):
            malloc_state = "skipped: LOADERD_MALLOC=default"
        elif any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                           "GLIBC_TUNABLES")):
            malloc_state = "skipped: the environment sets malloc tunables"
        elif not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
            malloc_state = "skipped: not glibc"
        else:
            try:
                libc = ctypes.CDLL("libc.so.6")
                m_trim_threshold, m_mmap_threshold = -1, -3
                if not (libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 30)):
                    malloc_state = "skipped: mallopt refused"
            except (OSError, AttributeError) as e:
                malloc_state = f"skipped: {e}"
        log.debug("loaderd: malloc %s", malloc_state)


class Batch(NamedTuple):
    """One training batch, as the server sent it.

    Over Flight the arrays are views of the Arrow record batch's memory (no
    copy), marked read-only as pyarrow hands them out; they keep that memory
    alive. Read in place from the server's cache (the local transport), they
    are buffers of the batch's own, gathered with one copy from the page
    cache, and writeable. Either way the memory is this batch's alone: the
    server's cache files are mapped read-only and never written through.

    Attributes
    ----------
    images : numpy.ndarray
        shape (B, H, W, 3), uint8 (RGB, row-major); or shape (B, 3, H, W),
        float32 when the server's pipeline ends in ``normalize``.
    labels : numpy.ndarray
        shape (B,), int64: the class of each sample (its index among the
        dataset's sorted class names).
    index : numpy.ndarray
        shape (B,), uint64: each sample's index in the dataset (SPEC §1), the
        same for a sample in every epoch.
    """

    images: np.ndarray
    labels: np.ndarray
    index: np.ndarray  # type: ignore[assignment]  # the field's name shadows tuple.index (the issue's Batch(images, labels, index))


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset the server serves (one ListFlights entry).

    Attributes
    ----------
    name : str
    samples : int
        N, the samples of one epoch.
    classes : list of str
        Class names; a label is an index into this list.
    pipeline : str
        The augmentation pipeline's canonical text.
    seed : int
    cached_epochs : list of int
        Epochs complete in the server's cache.
    """

    name: str
    samples: int
    classes: List[str] = field(default_factory=list)
    pipeline: str = ""
    seed: int = 0
    cached_epochs: List[int] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    """What a request will stream (GetFlightInfo).

    Attributes
    ----------
    request : dict
        The descriptor sent (SPEC §4).
    total_records : int
        Rows the stream yields: this rank's samples from ``start_batch`` on.
    num_batches : int
        Batches the stream yields.
    schema : pyarrow.Schema
        ``index`` uint64, ``label`` int64, ``image`` arrow.fixed_shape_tensor,
        with the ``loaderd.*`` metadata.
    endpoints : list of pyarrow.flight.FlightEndpoint
        Read in order; one without a location is served by the server asked.
    """

    request: Dict[str, Any]
    total_records: int
    num_batches: int
    schema: pa.Schema
    endpoints: List[flight.FlightEndpoint]

    @property
    def fingerprint(self) -> str:
        """The dataset fingerprint of the listing planned on (the schema's
        ``loaderd.dataset_fingerprint``, hex; SPEC §1): the same for two
        plans exactly when their sample indices mean the same files."""
        md = self.schema.metadata or {}
        return md.get(b"loaderd.dataset_fingerprint", b"").decode()


def _location(address: str, tls: bool) -> str:
    """A Flight URI for address ("host:port", a grpc:// URI, or a Unix
    socket's unix:///path or grpc+unix:///path)."""
    if "://" in address:
        scheme, rest = address.split("://", 1)
        if scheme in ("unix", "grpc+unix"):
            if not rest.startswith("/"):
                raise InvalidRequest(f"address {address!r}: want unix:///absolute/path.sock")
            return "grpc+unix://" + rest
        if scheme not in ("grpc", "grpc+tcp", "grpc+tls"):
            raise InvalidRequest(
                f"address {address!r}: scheme {scheme!r}, want grpc, grpc+tcp, grpc+tls or unix")
        return address
    if not address or ":" not in address:
        raise InvalidRequest(f"address {address!r}: want host:port or a grpc:// URI")
    return ("grpc+tls://" if tls else "grpc://") + address


def _read_certs(certs: Union[bytes, str, os.PathLike, None]) -> Optional[bytes]:
    if certs is None or isinstance(certs, bytes):
        return certs
    text = os.fspath(certs)
    if isinstance(text, str) and text.lstrip().startswith("-----BEGIN"):
        return text.encode()
    with open(text, "rb") as f:
        return f.read()


class Client:
    """A client of one loaderd server, over pyarrow.flight.

    Parameters
    ----------
    address : str
        ``"host:port"`` (plain gRPC, or TLS when ``tls_root_certs`` is given)
        or a Flight URI: ``grpc://host:port``, ``grpc+tls://host:port``, or
        a Unix socket on this host, ``unix:///path/loaderd.sock``.
    token : str, optional
        The bearer token of a server started with ``--auth-token-file``; sent
        as ``authorization: Bearer <token>`` on every call.
    tls_root_certs : bytes, str or os.PathLike, optional
        PEM certificates that verify a ``grpc+tls`` server (the bytes, or a
        file's path); None means the system's roots.
    retry_timeout : float
        Seconds a stream that broke off (server restarted, connection lost)
        keeps reconnecting and resuming where it stopped before it raises
        :class:`Unavailable`. 0 disables it. A server that cannot be reached
        at all fails at once.
    cache_dir : str or os.PathLike, optional
        Where this process sees the server's cache directory, when not at
        the path the server reports (a container's mount); for the local
        transport (:meth:`batches`).

    Raises
    ------
    InvalidRequest
        On an address that is not host:port or a grpc URI.

    Notes
    -----
    Every method raises a subclass of :class:`loaderd.Error` for a gRPC
    status: :class:`Unavailable`, :class:`Unauthenticated`,
    :class:`DatasetNotFound`, :class:`InvalidRequest`,
    :class:`DatasetChanged`, :class:`ResourceExhausted`, :class:`DataLoss`
    or :class:`ServerError`. A Client is safe to use from several threads.
    """

    def __init__(self, address: str, token: Optional[str] = None,
                 tls_root_certs: Union[bytes, str, os.PathLike, None] = None, *,
                 retry_timeout: float = 60.0, cache_dir: Union[str, os.PathLike, None] = None):
        self._certs = _read_certs(tls_root_certs)
        self.cache_dir = os.fspath(cache_dir) if cache_dir is not None else None
        self._auth = [(b"authorization", f"Bearer {token}".encode())] if token else []
        self._door: Optional[_local.Door] = None  # how to read the cache in place; guarded by _lock
        self._no_local: Optional[_local.NoLocal] = None  # why not, once known; guarded by _lock
        self._fell_back: set = set()  # reasons "auto" fell back for, logged once each; guarded by _lock
        self.location = _location(address, self._certs is not None)
        self._token = token
        self._options = flight.FlightCallOptions(
            headers=[(b"authorization", f"Bearer {token}".encode())] if token else [])
        self.retry_timeout = float(retry_timeout)
        self._lock = threading.Lock()
        self._conns: Dict[str, flight.FlightClient] = {}  # by location; guarded by _lock

    # -- connections ---------------------------------------------------

    def _conn(self, location: Optional[str] = None) -> flight.FlightClient:
        loc = location or self.location
        with self._lock:
            c = self._conns.get(loc)
            if c is None:
                kwargs: Dict[str, Any] = {}
                if self._certs is not None and loc.startswith("grpc+tls"):
                    kwargs["tls_root_certs"] = self._certs
                c = self._conns[loc] = flight.FlightClient(loc, **kwargs)
            return c

    def _reset(self, location: Optional[str] = None) -> None:
        """Drops the connection to location, so that the next call dials anew
        (gRPC's own reconnect waits out a backoff of up to seconds)."""
        with self._lock:
            c = self._conns.pop(location or self.location, None)
        if c is not None:
            try:
                c.close()
            except Exception:  # closing a broken channel may fail; it is gone anyway
                pass

    def close(self) -> None:
        """Closes every connection. The client may be used again (it redials)."""
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for c in conns:
            c.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"loaderd.Client({self.location!r})"

    def _error(self, exc: BaseException, location: Optional[str] = None) -> Error:
        loc = location or self.location
        return translate(exc, loc, token_given=self._token is not None,
                         tls=loc.startswith("grpc+tls"))

    # -- listing and actions ------------------------------------------

    def datasets(self) -> List[DatasetInfo]:
        """The datasets the server serves (ListFlights), in its order."""
        try:
            infos = list(self._conn().list_flights(options=self._options))
        except (pa.ArrowException, OSError) as e:
            raise self._error(e) from None
        out = []
        for info in infos:
            req = json.loads(info.descriptor.command)
            meta = json.loads(_app_metadata(info) or b"{}")
            out.append(DatasetInfo(name=req["dataset"], samples=info.total_records,
                                   classes=list(meta.get("classes") or []),
                                   pipeline=meta.get("pipeline", ""), seed=int(meta.get("seed", 0)),
                                   cached_epochs=list(meta.get("cached_epochs") or [])))
        return out

    def _action(self, kind: str, body: Optional[Dict[str, Any]] = None,
                each: Optional[Callable[[Any], None]] = None) -> List[Any]:
        payload = json.dumps(body).encode() if body is not None else b""
        results = []
        try:
            for r in self._conn().do_action(flight.Action(kind, payload), options=self._options):
                v = json.loads(r.body.to_pybytes())
                if each is not None:
                    each(v)
                results.append(v)
        except (pa.ArrowException, OSError) as e:
            raise self._not_found_hint(self._error(e), body) from None
        return results

    def _not_found_hint(self, err: Error, body: Optional[Dict[str, Any]]) -> Error:
        """Names the served datasets in a DatasetNotFound."""
        if not isinstance(err, DatasetNotFound):
            return err
        try:
            names = [d.name for d in self.datasets()]
        except Error:
            return err
        wanted = (body or {}).get("dataset", "?")
        return DatasetNotFound(
            f"loaderd at {err.address} serves no dataset {wanted!r} (it serves: "
            f"{', '.join(names) or 'none'}); check the name, or serve it with --data {wanted}=PATH",
            code=err.code, server_message=err.server_message, address=err.address)

    def cache_status(self, dataset: Optional[str] = None) -> Dict[str, Any]:
        """The server's cached epochs (the ``cache-status`` action).

        Returns
        -------
        dict
            ``{"datasets": [{"dataset": NAME, "epochs": [{"epoch": E, "state":
            "partial" | "complete" | "evicting", "bytes": B, "samples": K}]}]}``;
            epochs not in the cache are not listed.
        """
        return self._action("cache-status", {"dataset": dataset} if dataset else None)[-1]

    def precompute(self, dataset: str, epochs: Union[int, Iterable[int]],
                   progress: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
        """Fills the server's cache with epochs of dataset and returns when
        they are complete (the ``precompute`` action; idempotent).

        Parameters
        ----------
        epochs : int or iterable of int
        progress : callable, optional
            Called with each progress result: ``{"dataset", "epochs", "done",
            "total", "images_per_sec"}`` (done and total in samples, of
            the rows to compute). Not called when every row is cached.

        Returns
        -------
        dict
            The summary: ``{"dataset", "epochs", "computed", "cached",
            "seconds", "images_per_sec", "bytes"}``.
        """
        ep = [int(epochs)] if isinstance(epochs, (int, np.integer)) else [int(e) for e in epochs]
        results: List[Dict[str, Any]] = []

        def each(v: Dict[str, Any]) -> None:
            # Every result but the last is progress; the last is the summary,
            # known once the stream ends, so hold each one back by one.
            if results and progress is not None:
                progress(results[-1])
            results.append(v)

        self._action("precompute", {"dataset": dataset, "epochs": ep}, each)
        if not results:
            raise Error(f"loaderd at {self.location}: precompute returned no summary")
        return results[-1]

    def evict(self, dataset: str, epochs: Union[int, Iterable[int]]) -> Dict[str, Any]:
        """Frees epochs of dataset from the server's cache (the ``evict``
        action); an epoch being streamed is freed when its streams end.
        Returns the cache status, as :meth:`cache_status`, with an
        ``"evicted"`` list: for each epoch asked for ``{"dataset", "epoch",
        "result", "other"}``, result ``"evicted"``, ``"not_cached"`` (nothing
        to free; not an error) or ``"evicting"`` (freed when its streams end)."""
        ep = [int(epochs)] if isinstance(epochs, (int, np.integer)) else [int(e) for e in epochs]
        return self._action("evict", {"dataset": dataset, "epochs": ep})[-1]

    def dataset_errors(self, dataset: str) -> List[Dict[str, Any]]:
        """The samples of dataset the server could not decode so far: a list
        of ``{"index": int, "path": str, "kind": "undecodable", "reason": str}``
        (docs/SPEC.md §5). Files that could not be *read* are not listed: a
        read error ends the stream that met it (:class:`Unavailable`) and
        marks nothing bad."""
        return self._action("dataset-errors", {"dataset": dataset})[-1]

    def rescan(self, dataset: Optional[str] = None) -> List[Dict[str, Any]]:
        """Lists dataset (every served dataset when None) again now: the
        ``rescan`` action (docs/SPEC.md, Implementation notes). The server
        notices changes by itself within seconds on a local file system;
        call this after changing a dataset on NFS or another file system
        without change notification.

        Returns
        -------
        list of dict
            One ``{"dataset": str, "samples": int, "classes": int,
            "fingerprint": str, "changed": bool}`` per dataset; ``changed``
            is True when this rescan found a new listing. Requests made
            after it see the new listing; tickets of the old one are stale
            (a stream handles that as its ``on_change`` says, :meth:`batches`).

        Raises
        ------
        DatasetNotFound
            The server does not serve dataset.
        DatasetChanged
            The dataset can no longer be listed (its root is gone, no sample
            is left); the server keeps serving its last listing.
        """
        body = None if dataset is None else {"dataset": dataset}
        return self._action("rescan", body)[-1]["datasets"]

    def topology(self) -> Dict[str, Any]:
        """The server's GPUs, NUMA nodes, CPU sets and worker placement (the
        ``topology`` action), as ``loaderd topology --json`` prints them."""
        return self._action("topology")[-1]

    # -- streaming -----------------------------------------------------

    @staticmethod
    def request(dataset: str, epoch: int = 0, batch_size: int = 256, rank: int = 0,
                world_size: int = 1, drop_last: bool = False, shuffle: bool = True,
                start_batch: int = 0, gpu: Union[int, str, None] = None) -> Dict[str, Any]:
        """The descriptor of a stream request (SPEC §4), as a dict."""
        req: Dict[str, Any] = {
            "dataset": str(dataset), "epoch": int(epoch), "batch_size": int(batch_size),
            "rank": int(rank), "world_size": int(world_size), "drop_last": bool(drop_last),
            "shuffle": bool(shuffle), "start_batch": int(start_batch)}
        if gpu is not None:
            req["gpu"] = str(gpu)
        return req

    def _get_flight_info(self, req: Dict[str, Any]) -> flight.FlightInfo:
        desc = flight.FlightDescriptor.for_command(json.dumps(req))
        return self._conn().get_flight_info(desc, self._options)

    def plan(self, dataset: str, epoch: int = 0, batch_size: int = 256, rank: int = 0,
             world_size: int = 1, drop_last: bool = False, shuffle: bool = True,
             start_batch: int = 0, gpu: Union[int, str, None] = None) -> Plan:
        """Asks what a stream would yield (GetFlightInfo) without streaming it.
        The parameters are those of :meth:`batches`."""
        return self._plan(self.request(dataset, epoch, batch_size, rank, world_size,
                                       drop_last, shuffle, start_batch, gpu))

    def _plan(self, req: Dict[str, Any]) -> Plan:
        try:
            info = self._get_flight_info(req)
        except (pa.ArrowException, OSError) as e:
            raise self._not_found_hint(self._error(e), req) from None
        rows = int(info.total_records)
        return Plan(request=req, total_records=rows, num_batches=math.ceil(rows / req["batch_size"]),
                    schema=info.schema, endpoints=list(info.endpoints))

    def _local_door(self) -> _local.Door:
        """How this process reads the server's cache in place, found out once
        (the ``local-info`` action); raises _local.NoLocal with the reason."""
        with self._lock:
            door, why = self._door, self._no_local
        if door is not None:
            return door
        if why is not None:
            raise why
        try:
            door = _local.open_door(self._conn(), self._options, self.cache_dir, self._error)
        except _local.NoLocal as e:
            with self._lock:
                self._no_local = e
            raise
        with self._lock:
            self._door = door
        return door

    def _forget_door(self) -> None:
        """Forgets what _local_door found (the server may have restarted)."""
        with self._lock:
            self._door = self._no_local = None

    def _fall_back(self, why: _local.NoLocal) -> None:
        """Says once per reason why transport "auto" streams over Flight."""
        with self._lock:
            said = why.reason in self._fell_back
            self._fell_back.add(why.reason)
        if not said:
            (log.warning if why.warn else log.info)(
                "loaderd: streaming from %s over Flight, not from its cache in place: %s",
                self.location, why.reason)

    def batches(self, dataset: str, epoch: int = 0, batch_size: int = 256, rank: int = 0,
                world_size: int = 1, drop_last: bool = False, shuffle: bool = True,
                start_batch: int = 0, gpu: Union[int, str, None] = None,
                transport: str = "auto", *, on_change: str = "raise",
                fingerprint: Optional[str] = None) -> "BatchStream":
        """Streams one rank's batches of an epoch.

        Parameters
        ----------
        dataset : str
            A name the server serves (:meth:`datasets`).
        epoch : int
            0 ≤ epoch < 2**31; each epoch has its own order and augmentations.
        batch_size : int
            B, 1..65536 rows per batch; the last batch may be shorter.
        rank, world_size : int
            This rank's share, as torch's DistributedSampler cuts it (SPEC §3):
            every rank gets the same number of batches.
        drop_last : bool
            Truncate the epoch to a multiple of world_size and drop the last
            short batch (else: pad by wrapping around, keep it).
        shuffle : bool
            False serves the epoch in index order (same pixels).
        start_batch : int
            Resume at this batch of the rank's stream: the result is the full
            stream minus its first start_batch batches.
        gpu : int or str, optional
            The trainer's GPU (NVML index, UUID or PCI bus id), so that workers
            on its NUMA node feed it.
        transport : {"auto", "local", "flight"}
            How the batches come (docs/SPEC.md §9). ``"local"`` reads the
            server's cache in place: Flight carries each batch's plan, and
            the rows are copied from the memory-mapped shard files into one
            buffer (one copy, from the page cache shared by every rank of the
            host). ``"flight"`` streams the pixels over gRPC. ``"auto"`` is
            local when the server is on this host and this process can read
            its cache, else flight, with one log line saying why. The bytes
            are the same either way.
        on_change : {"raise", "continue"}
            What the stream does when the dataset's files change on the
            server after batches of the epoch were delivered (a file it
            still needs removed or rewritten, or a new listing found when it
            reconnects; docs/SPEC.md §4). Those batches came from the old
            listing, which the server no longer serves, so the rest of the
            epoch cannot follow it. ``"raise"`` (the default; torch's
            DataLoader fails on a vanished file too) raises
            :class:`DatasetChanged` naming the batch reached.
            ``"continue"`` logs a warning naming that batch and goes on from
            the same batch of the new listing: its order and ``index``
            values are the new listing's, so this epoch no longer covers
            every sample exactly once. The epoch's batch count stays that of
            the first plan, so every rank still gets the same number: a
            longer new listing is cut short, a shorter one taken again from
            its first batch. A change before the epoch's first batch (a
            ticket that went stale between plan and first read) is no change
            for the epoch: the stream plans again on the new listing by
            itself, once.
        fingerprint : str, optional
            With ``start_batch`` > 0, the dataset fingerprint the epoch's
            first ``start_batch`` batches came from (``BatchStream.fingerprint``
            of the stream that delivered them): the stream checks that the
            server still serves that listing before it goes on, and treats
            another as a change (``on_change``). Without it a resumed stream
            takes whatever listing the server serves now.

        Returns
        -------
        BatchStream
            An iterator of :class:`Batch` (numpy arrays sharing Arrow's
            memory). It follows the plan's endpoints in order, dialling
            endpoints that name another server; if the stream breaks off it
            reconnects and resumes at the next batch (``retry_timeout``), on
            the same listing; a changed dataset is handled as ``on_change``
            says.

        Raises
        ------
        loaderd.Error
            A subclass per gRPC status, at the first ``next()`` for the
            request's own errors (unknown dataset, a field out of range);
            :class:`LocalUnavailable` when ``transport="local"`` cannot be;
            :class:`DatasetChanged` as ``on_change`` says.
        """
        if transport not in ("auto", "local", "flight"):
            raise InvalidRequest(f"transport {transport!r}: want \"auto\", \"local\" or \"flight\"")
        if on_change not in ON_CHANGE:
            raise InvalidRequest(f"on_change {on_change!r}: want \"raise\" or \"continue\"")
        req = self.request(dataset, epoch, batch_size, rank, world_size, drop_last,
                           shuffle, start_batch, gpu)
        return BatchStream(self, req, transport, on_change=on_change, fingerprint=fingerprint)


def _app_metadata(info: flight.FlightInfo) -> bytes:
    """FlightInfo.app_metadata; pyarrow < 15 keeps it only in the serialized
    protobuf, field 7 of FlightInfo."""
    md = getattr(info, "app_metadata", None)
    if md is not None:
        return bytes(md)
    return _proto_bytes(info.serialize(), 7)


def _proto_bytes(buf: bytes, number: int) -> bytes:
    """The first length-delimited field `number` of a protobuf message, or b""."""
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = value = 0
        while True:
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(buf):
        key = varint()
        wire = key & 7
        if wire == 0:
            varint()
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            n = varint()
            if key >> 3 == number:
                return bytes(buf[pos:pos + n])
            pos += n
        else:
            break  # groups: not in Flight's messages
    return b""


def _to_batch(rb: pa.RecordBatch) -> Batch:
    image = rb.column(rb.schema.get_field_index("image"))
    if isinstance(image, pa.ChunkedArray):  # pyarrow < 15 on some paths
        image = image.combine_chunks()
    if not hasattr(image, "to_numpy_ndarray"):
        raise Error(f"the image column is {image.type}, not an arrow.fixed_shape_tensor "
                    f"(pyarrow {pa.__version__}; loaderd needs pyarrow >= 14)")
    images = image.to_numpy_ndarray()
    labels = rb.column(rb.schema.get_field_index("label")).to_numpy(zero_copy_only=True)
    index = rb.column(rb.schema.get_field_index("index")).to_numpy(zero_copy_only=True)
    return Batch(images, labels, index)


class BatchStream(Iterator[Batch]):
    """An iterator of one request's :class:`Batch` es (from
    :meth:`Client.batches`).

    Attributes
    ----------
    request : dict
        The descriptor as first asked.
    yielded : int
        Batches handed out so far.
    plan : Plan or None
        The plan in use (after the first ``next()``).
    fingerprint : str or None
        The dataset fingerprint of the listing the batches handed out so far
        came from (after ``on_change="continue"``, the last one's): what a
        checkpoint saves beside the position, for ``Client.batches(...,
        start_batch=, fingerprint=)`` to check on resume.
    num_batches : int or None
        The rank's batches in the epoch, ``start_batch`` included, as first
        planned (kept when the stream continues on a new listing).

    ``cancel()`` may be called from another thread: it ends the stream (the
    iterating thread then sees StopIteration). ``close()`` frees the stream
    and its server-side work; a with block calls it.
    """

    def __init__(self, client: Client, request: Dict[str, Any], transport: str = "auto", *,
                 on_change: str = "raise", fingerprint: Optional[str] = None):
        self.client = client
        self.request = dict(request)
        #: "local" or "flight" once the stream knows which way its batches come
        self.transport: Optional[str] = None if transport == "auto" else transport
        self._want = transport
        self.on_change = on_change
        #: allocate(shape, dtype) of the local transport's batch buffers (np.empty when None)
        self._allocate: Optional[_local.Allocate] = None
        self.yielded = 0
        self.plan: Optional[Plan] = None
        self.fingerprint: Optional[str] = fingerprint or None
        self.num_batches: Optional[int] = None
        self._gen: Optional[Generator[Batch, None, None]] = None
        self._refreshed = False  # the cache's door was asked for again after a refusal
        self._connected = False  # a call has succeeded: from now on, outages are retried
        self._at = client.location  # where the batches are read from now
        self._lock = threading.Lock()
        self._reader: Optional[flight.FlightStreamReader] = None  # guarded by _lock
        self._cancelled = False  # guarded by _lock

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> Batch:
        if self._gen is None:
            self._gen = self._run()
        return next(self._gen)

    def cancel(self) -> None:
        """Ends the stream from any thread; the server stops its work on it."""
        with self._lock:
            self._cancelled = True
            reader = self._reader
        if reader is not None:
            reader.cancel()

    def close(self) -> None:
        """Ends the stream (from the iterating thread)."""
        self.cancel()
        if self._gen is not None:
            self._gen.close()

    def __enter__(self) -> "BatchStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _run(self) -> Generator[Batch, None, None]:
        _tune_malloc()
        c = self.client
        first = self.request["start_batch"]
        pos = first  # the batch of the listing in use to ask for next
        # Look at the server's listing before asking for pos: a resume that
        # knows the listing of its epoch's first batches, and every stream
        # that broke off or went stale.
        look = self.fingerprint is not None and first > 0
        changed: Optional[DatasetChanged] = None  # why the last stream ended, if the dataset changed
        fruitless = 0  # changes met since the last batch handed out
        capped = False  # on a new listing: stop at num_batches, round it when short
        deadline: Optional[float] = None
        backoff = 0.05
        while True:
            try:
                if look:
                    pos, capped = self._look(pos, changed, capped)
                    look, changed = False, None
                plan, batches = self._open(dict(self.request, start_batch=pos))
                if self.fingerprint is None:
                    self.fingerprint = plan.fingerprint
                elif plan.fingerprint != self.fingerprint:  # listed again since _look
                    batches.close()
                    why = "the dataset changed on the server while the stream planned"
                    raise DatasetChanged(f"loaderd at {c.location}: {why}", code="FAILED_PRECONDITION",
                                         server_message=why, address=c.location)
                if self.num_batches is None:
                    self.num_batches = pos + plan.num_batches
                self.plan = plan
                try:
                    for batch in batches:
                        deadline, backoff, fruitless = None, 0.05, 0
                        pos += 1
                        self.yielded += 1
                        yield batch
                        if capped and first + self.yielded >= self.num_batches:
                            return  # the epoch's count, on a listing with more
                finally:
                    batches.close()
                if not capped or first + self.yielded >= self.num_batches:
                    return
                pos = 0  # a new listing with fewer batches than the epoch: round it again
            except DatasetChanged as e:
                if e.batch is not None or self._stopped():
                    raise  # on_change="raise" said so (_changed), or nobody is reading
                fruitless += 1
                if fruitless > 1:
                    raise  # changed again before a batch came: let the files settle
                changed, look = e, True
            except Unavailable as e:
                if self._stopped():
                    return
                if not self._connected or not e.retryable or c.retry_timeout <= 0:
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + c.retry_timeout
                    log.warning("loaderd: stream from %s broke off after %d batches (%s); "
                                "reconnecting for up to %g s", self._at, self.yielded,
                                e.server_message, c.retry_timeout)
                if now >= deadline:
                    raise Unavailable(
                        f"{e}; gave up reconnecting after {c.retry_timeout:g} s (retry_timeout)",
                        code=e.code, server_message=e.server_message, address=e.address) from None
                c._reset(self._at)
                c._reset()
                self._at = c.location
                look = look or self.fingerprint is not None  # the dataset may have changed meanwhile
                time.sleep(min(backoff, max(0.0, deadline - now)) * (0.5 + random.random()))
                backoff = min(backoff * 2, 1.0)

    def _look(self, pos: int, changed: Optional[DatasetChanged], capped: bool) -> Tuple[int, bool]:
        """Where the stream goes on after it broke off, went stale, or
        resumes: at pos when the server still serves the listing of the
        batches delivered, else as on_change says. changed is the error that
        ended the last stream, if the dataset changed. Returns the batch of
        the listing to ask for and whether the epoch's count caps it."""
        c = self.client
        probe = c._plan(dict(self.request, start_batch=0))
        self._connected = True
        if changed is not None and probe.fingerprint == self.fingerprint:
            # The stream met a changed file before the server listed the
            # dataset again (it waits for changes to settle): list it now.
            c.rescan(self.request["dataset"])
            probe = c._plan(dict(self.request, start_batch=0))
            if probe.fingerprint == self.fingerprint:
                raise changed
        if self.num_batches is None:
            self.num_batches = probe.num_batches  # a resume: the server's count now
        if self.fingerprint is None or probe.fingerprint == self.fingerprint:
            return pos, capped
        return self._changed(probe, changed), True

    def _changed(self, probe: Plan, changed: Optional[DatasetChanged]) -> int:
        """The listing changed under the stream: adopts probe's listing when
        no batch of the epoch was delivered yet; else raises DatasetChanged
        or, with on_change="continue", warns and returns the batch of the
        new listing to go on from."""
        c, req = self.client, self.request
        done = req["start_batch"] + self.yielded  # batches of the epoch delivered
        old, self.fingerprint = self.fingerprint, probe.fingerprint
        if done == 0:
            log.info("loaderd: dataset %r changed on the server before the first batch of epoch %d; "
                     "streaming its new listing", req["dataset"], req["epoch"])
            self.num_batches = probe.num_batches
            return 0
        why = (changed.server_message if changed is not None and changed.server_message
               else "the server lists it anew (found when the stream reconnected)")
        if self.yielded == 0:  # a resume, told the listing of the batches before
            where = (f"dataset {req['dataset']!r} changed on the server since batches 0-{done - 1} "
                     f"of epoch {req['epoch']} (rank {req['rank']} of {req['world_size']}) were "
                     f"delivered: the stream resumes at batch {done}, but the server no longer "
                     f"serves their listing (fingerprint {(old or '')[:12]}…, now {probe.fingerprint[:12]}…)")
        else:
            where = (f"dataset {req['dataset']!r} changed on the server when {done} of the "
                     f"{self.num_batches} batches of epoch {req['epoch']} (rank {req['rank']} of "
                     f"{req['world_size']}) had been delivered (batches 0-{done - 1}): {why}")
        if self.on_change == "raise" or probe.num_batches == 0:
            self.fingerprint = old
            short = (f"; the new listing has no batch for rank {req['rank']}"
                     if probe.num_batches == 0 else "")
            raise DatasetChanged(
                f"loaderd at {c.location}: {where}{short}. The batches delivered came from the old "
                "listing, which the server no longer serves, so the rest of this epoch cannot "
                "follow it (the new listing's order and index values differ). Start this epoch "
                "again or go on with the next one (a new stream from batch 0), or pass "
                "on_change=\"continue\" to take the rest from the new listing (this epoch then "
                "does not cover every sample exactly once)",
                code="FAILED_PRECONDITION", server_message=changed.server_message if changed else None,
                address=c.location, epoch=req["epoch"], batch=done, fingerprint=old)
        pos = done % probe.num_batches
        log.warning("loaderd: %s; continuing from batch %d of the new listing (on_change=\"continue\"): "
                    "this epoch's coverage is no longer exact (samples may repeat or be missed; "
                    "index values from here on are the new listing's); %d batches of the epoch to go",
                    where, pos, self.num_batches - done)
        return pos

    def _open(self, req: Dict[str, Any]) -> Tuple[Plan, Generator[Batch, None, None]]:
        """Plans req the way this stream's batches come (in place or over
        Flight): the plan and its batches, not yet read."""
        c = self.client
        while True:
            door = self._door()
            if door is None:
                plan = c._plan(req)
                self._connected = True
                return plan, self._read_flight(plan)
            self._connected = True  # the server answered local-info
            try:
                plan = self._plan_local(req, door)
            except _local.NoLocal as e:  # refused before any plan came
                if not self._refreshed:  # the server may have restarted: a new token
                    self._refreshed = True
                    c._forget_door()
                    continue
                if self._want == "local":
                    raise LocalUnavailable(f"loaderd at {c.location}: {e.reason}", address=c.location) from None
                c._fall_back(e)
                self.transport = "flight"
                continue
            return plan, self._read_local(plan, door)

    def _door(self) -> Optional[_local.Door]:
        """The Door of a local stream, or None to stream over Flight."""
        if self.transport == "flight":
            return None
        try:
            return self.client._local_door()
        except _local.NoLocal as e:
            if self._want == "local":
                raise LocalUnavailable(f"loaderd at {self.client.location}: {e.reason}",
                                       address=self.client.location) from None
            self.client._fall_back(e)
            self.transport = "flight"
            return None

    def _set_reader(self, reader: Any) -> None:
        with self._lock:
            cancelled = self._cancelled
            self._reader = reader
        if cancelled:
            reader.cancel()

    def _read_flight(self, plan: Plan) -> Generator[Batch, None, None]:
        """The batches of an ordinary stream's plan, endpoint after endpoint."""
        for ep in plan.endpoints:
            self._at = self._location_of(ep)
            yield from self._read(ep, self._at)

    def _plan_local(self, req: Dict[str, Any], door: _local.Door) -> Plan:
        """The plan of req read in place (docs/SPEC.md §9). Raises
        _local.NoLocal when the server refuses."""
        c = self.client
        opts = flight.FlightCallOptions(headers=c._auth + door.headers)
        lreq = dict(req, transport="local")
        try:
            info = c._conn().get_flight_info(flight.FlightDescriptor.for_command(json.dumps(lreq)), opts)
        except (pa.ArrowException, OSError) as e:
            why = _local.is_refusal(e)
            if why is not None:
                raise _local.NoLocal(why) from None
            raise c._not_found_hint(c._error(e), req) from None
        rows = int(info.total_records)
        plan = Plan(request=lreq, total_records=rows, num_batches=math.ceil(rows / req["batch_size"]),
                    schema=info.schema, endpoints=list(info.endpoints))
        self.transport = "local"
        if len(plan.endpoints) != 1:
            raise LocalUnavailable(f"loaderd at {c.location}: a local stream of "
                                   f"{len(plan.endpoints)} endpoints, want 1")
        return plan

    def _read_local(self, plan: Plan, door: _local.Door) -> Generator[Batch, None, None]:
        """The batches of a local plan, gathered from the cache's files."""
        c = self.client
        self._at = c.location
        opts = flight.FlightCallOptions(headers=c._auth + door.headers)
        _, image_type, _ = _local.image_schema(plan.schema)
        g = _local.Gatherer(door.cache_dir, image_type, self._allocate)
        done = False
        try:
            for rows in _local.read_exchange(c._conn(), plan.endpoints[0].ticket.ticket,
                                              opts, self._set_reader):
                images, labels, index = g.batch(rows)
                yield Batch(images, labels, index)
            done = True
        except Error:
            raise  # ours already (Unavailable is an OSError too)
        except (pa.ArrowException, OSError) as e:
            if self._stopped():
                return
            raise c._error(e) from None
        finally:
            g.close()
            with self._lock:
                reader, self._reader = self._reader, None
            if not done and reader is not None and not self._stopped():
                reader.cancel()  # a consumer that stopped early frees the server's work

    def _stopped(self) -> bool:
        with self._lock:
            return self._cancelled

    def _location_of(self, ep: flight.FlightEndpoint) -> str:
        for loc in ep.locations:
            uri = loc.uri.decode() if isinstance(loc.uri, bytes) else str(loc.uri)
            if uri and uri != _REUSE:
                return uri
        return self.client.location

    def _read(self, ep: flight.FlightEndpoint, location: str) -> Generator[Batch, None, None]:
        c = self.client
        try:
            reader = c._conn(location).do_get(ep.ticket, c._options)
        except (pa.ArrowException, OSError) as e:
            raise c._error(e, location) from None
        with self._lock:
            if self._cancelled:
                reader.cancel()
                return
            self._reader = reader
        done = False
        try:
            while True:
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    done = True
                    return
                except (pa.ArrowException, OSError) as e:
                    if self._stopped():
                        return
                    raise c._error(e, location) from None
                yield _to_batch(chunk.data)
        finally:
            with self._lock:
                self._reader = None
            if not done and not self._stopped():
                reader.cancel()  # a consumer that stopped early frees the server's work
