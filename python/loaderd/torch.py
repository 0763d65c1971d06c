"""PyTorch's side: :class:`LoaderdDataset`, an IterableDataset of a rank's
batches, streamed from loaderd with read-ahead and exact mid-epoch resume.

Needs torch (``pip install 'loaderd[torch]'``).
"""

from __future__ import annotations

import os
import queue
import threading
import warnings
from typing import Any, Dict, Iterator, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
import torch.utils.data
from torch.utils.data._utils.collate import default_collate_fn_map

from ._client import ON_CHANGE, Batch, BatchStream, Client
from ._errors import InvalidRequest

__all__ = ["LoaderdDataset", "TorchBatch"]


class TorchBatch(NamedTuple):
    """One training batch as torch tensors.

    Attributes
    ----------
    images : torch.Tensor
        shape (B, H, W, 3), uint8; or (B, 3, H, W), float32 after the server's
        ``normalize``. On the CPU it shares the Arrow memory the batch arrived
        in over Flight, or is the buffer the local transport gathered the rows
        into (pinned, with ``pin_memory``): no copy either way; on ``device``
        otherwise. torch has no read-only tensors: writing into it changes
        this batch's memory alone (never the server's cache or another batch).
    labels : torch.Tensor
        shape (B,), int64, on ``device`` when one is set.
    index : torch.Tensor
        shape (B,), int64, the samples' dataset indices; stays on the CPU.
    """

    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor


def _refuse_collate(batch: Any, *, collate_fn_map: Any = None) -> Any:
    """default_collate's function for TorchBatch: a DataLoader with a
    batch_size would stack whole batches into one; refuse it."""
    rows = batch[0].labels.shape[0]
    raise InvalidRequest(
        "a DataLoader with a batch_size (its default is 1) would collate LoaderdDataset's batches "
        f"(here {len(batch)} of {rows} rows each) into tensors with an extra batch dimension: "
        "LoaderdDataset yields whole batches, so wrap it as "
        "DataLoader(ds, batch_size=None) (with num_workers=0), or iterate the dataset directly; "
        "the batch size is LoaderdDataset's own batch_size")


# DataLoader(ds) and DataLoader(ds, batch_size=N) hand default_collate lists
# of TorchBatch es, which it would stack into (N, B, ...) tensors; with
# batch_size=None, default_convert passes each one through. torch (1.13 and
# later) looks an element's type up in default_collate_fn_map before its own
# rules: the documented way to extend default_collate.
default_collate_fn_map[TorchBatch] = _refuse_collate


_STATE_KEYS = ("dataset", "batch_size", "world_size", "drop_last", "shuffle")


def _from_numpy(a: np.ndarray) -> torch.Tensor:
    """A tensor over a's memory. Arrow's buffers are read-only, which torch
    warns about once per process; the memory is this batch's alone."""
    if a.flags.writeable:
        return torch.from_numpy(a)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(a)


class LoaderdDataset(torch.utils.data.IterableDataset):
    """One rank's batches of a loaderd dataset, epoch after epoch.

    Iterating yields :class:`TorchBatch` es ``(images, labels, index)`` of the
    current epoch (:meth:`set_epoch`), read ``prefetch`` batches ahead on a
    background thread so that the network overlaps the training step. Every
    rank gets the same number of batches (``len()``), so DDP's collective
    calls (and ``no_sync()`` gradient accumulation) never wait on a rank that
    ran out. Use it directly, or as ``DataLoader(ds, batch_size=None)``:
    batching, shuffling, sharding and augmentation happen in loaderd. A
    DataLoader with a batch size (its default is 1) would stack whole
    batches into one tensor: its collation raises
    :class:`loaderd.InvalidRequest` instead.

    Parameters
    ----------
    address : str
        loaderd's address, ``"host:port"`` or a ``grpc://`` /
        ``grpc+tls://`` URI.
    dataset : str
        A dataset the server serves.
    batch_size : int
        Rows per batch, per rank.
    drop_last : bool
        As DistributedSampler + DataLoader: truncate the epoch to a multiple
        of the world size and drop the last short batch.
    shuffle : bool
        False streams the epoch in index order.
    epoch : int
        The first epoch (see :meth:`set_epoch`).
    rank, world_size : int, optional
        Default: ``torch.distributed``'s when it is initialised, else the
        ``RANK`` and ``WORLD_SIZE`` environment variables (torchrun sets
        them), else 0 and 1. Read when iteration starts.
    gpu : int or str, optional
        The trainer's GPU as the server names it (NVML index, UUID or PCI bus
        id): the server feeds it from workers on that GPU's NUMA node.
    token, tls_root_certs, cache_dir
        As :class:`loaderd.Client`.
    transport : {"auto", "local", "flight"}
        As :meth:`loaderd.Client.batches`: ``"auto"`` reads the server's
        cache in place when the server is on this host and its cache is
        readable here (one copy from the page cache, shared by every rank),
        else streams over Flight.
    prefetch : int
        Batches read ahead of the consumer (≥ 1).
    device : torch.device or str, optional
        Move images and labels there with a non-blocking copy.
    pin_memory : bool
        Copy each batch into page-locked memory on the background thread
        first, so the copy to a CUDA device is asynchronous (read in place,
        the rows are gathered straight into page-locked memory: still one
        copy). Ignored, with a warning, when CUDA is not available.
    on_change : {"raise", "continue"}
        When the dataset's files change on the server after batches of the
        epoch were delivered (or between a checkpoint and its resume), the
        rest of the epoch cannot follow the old listing: ``"raise"`` raises
        :class:`loaderd.DatasetChanged` naming the batch reached;
        ``"continue"`` warns and goes on from the same batch of the new
        listing, keeping the epoch's batch count (see
        :meth:`loaderd.Client.batches`). A change before an epoch's first
        batch is followed silently.

    Raises
    ------
    loaderd.InvalidRequest
        Iterated inside a DataLoader worker (``num_workers > 0``): loaderd is
        the worker pool already; use ``num_workers=0``. Collated by a
        DataLoader with a ``batch_size``: use ``batch_size=None``.
    loaderd.DatasetChanged
        As ``on_change`` says.
    loaderd.Error
        The server's errors, as :class:`loaderd.Client` raises them.

    Notes
    -----
    ``state_dict()`` is the position in the epoch, ``{"epoch", "batch",
    "fingerprint", ...}``, where ``batch`` counts the batches of the epoch
    yielded and ``fingerprint`` is the dataset listing they came from. A new
    iteration goes on from the position (after a complete epoch, it starts
    the epoch again). After ``load_state_dict`` the next iteration starts at
    the saved batch (none, if the epoch was saved complete), and the
    batches are byte for byte those the uninterrupted epoch would have
    yielded, also after a server restart (SPEC §2–3), as long as the server
    still serves the listing the saved batches came from (else
    ``on_change`` decides). All ranks of a job are at the same position, so
    rank 0's state resumes every rank.
    """

    def __init__(self, address: str, dataset: str, batch_size: int, *, drop_last: bool = False,
                 shuffle: bool = True, epoch: int = 0, rank: Optional[int] = None,
                 world_size: Optional[int] = None, gpu: Union[int, str, None] = None,
                 token: Optional[str] = None, tls_root_certs: Any = None, prefetch: int = 2,
                 device: Union[torch.device, str, None] = None, pin_memory: bool = False,
                 transport: str = "auto", cache_dir: Union[str, os.PathLike, None] = None,
                 on_change: str = "raise"):
        super().__init__()
        if int(batch_size) < 1:
            raise InvalidRequest(f"batch_size {batch_size}: want at least 1")
        if int(prefetch) < 1:
            raise InvalidRequest(f"prefetch {prefetch}: want at least 1")
        self.address, self.dataset, self.batch_size = address, dataset, int(batch_size)
        self.drop_last, self.shuffle, self.gpu = bool(drop_last), bool(shuffle), gpu
        self._rank, self._world_size = rank, world_size
        self.token, self.tls_root_certs = token, tls_root_certs
        if transport not in ("auto", "local", "flight"):
            raise InvalidRequest(f"transport {transport!r}: want \"auto\", \"local\" or \"flight\"")
        self.transport, self.cache_dir = transport, cache_dir
        if on_change not in ON_CHANGE:
            raise InvalidRequest(f"on_change {on_change!r}: want \"raise\" or \"continue\"")
        self.on_change = on_change
        self.prefetch = int(prefetch)
        self.device = torch.device(device) if device is not None else None
        self.pin_memory = bool(pin_memory)
        if self.pin_memory and not torch.cuda.is_available():
            warnings.warn("LoaderdDataset: pin_memory=True but CUDA is not available; not pinning")
            self.pin_memory = False
        self.epoch = int(epoch)
        self._position = 0  # batches of self.epoch yielded (or restored)
        self._fingerprint: Optional[str] = None  # the listing those batches came from
        self._restored = False  # _position came from load_state_dict, not yet iterated
        self._reader: Optional[_ReadAhead] = None  # the running iteration's
        self._client: Optional[Client] = None
        self._lens: Dict[Tuple[int, int, int], int] = {}

    # -- where this rank stands ---------------------------------------

    @property
    def rank(self) -> int:
        """This rank: the argument, else torch.distributed's, else $RANK, else 0."""
        if self._rank is not None:
            return int(self._rank)
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank()
        return int(os.environ.get("RANK", 0))

    @property
    def world_size(self) -> int:
        """The world size: the argument, else torch.distributed's, else $WORLD_SIZE, else 1."""
        if self._world_size is not None:
            return int(self._world_size)
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size()
        return int(os.environ.get("WORLD_SIZE", 1))

    @property
    def client(self) -> Client:
        """The Client, made on first use in this process."""
        if self._client is None:
            self._client = Client(self.address, token=self.token, tls_root_certs=self.tls_root_certs,
                                  cache_dir=self.cache_dir)
        return self._client

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = state["_reader"] = None  # connections and threads stay in their process
        return state

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch the next iteration streams, as
        DistributedSampler.set_epoch does. Setting the epoch already set keeps
        the position (so a restored state resumes mid-epoch); another epoch
        starts at its first batch."""
        epoch = int(epoch)
        if epoch != self.epoch:
            self.epoch, self._position, self._restored, self._fingerprint = epoch, 0, False, None

    def __len__(self) -> int:
        """Batches per epoch for this rank (the same on every rank)."""
        key = (self.epoch, self.rank, self.world_size)
        if key not in self._lens:
            plan = self.client.plan(self.dataset, self.epoch, self.batch_size, self.rank,
                                    self.world_size, self.drop_last, self.shuffle)
            self._lens[key] = plan.num_batches
        return self._lens[key]

    # -- checkpoints ---------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """The position: ``{"epoch": int, "batch": int, "fingerprint": str or
        None, "dataset", "batch_size", "world_size", "drop_last", "shuffle"}``;
        ``batch`` is the number of batches of ``epoch`` already yielded and
        ``fingerprint`` the dataset fingerprint of the listing they came from
        (None before the first). Save it beside the model."""
        return {"epoch": self.epoch, "batch": self._position, "fingerprint": self._fingerprint,
                "dataset": self.dataset, "batch_size": self.batch_size,
                "world_size": self.world_size, "drop_last": self.drop_last, "shuffle": self.shuffle}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restores a position from :meth:`state_dict`: the next iteration
        streams epoch ``state["epoch"]`` from batch ``state["batch"]`` on,
        after checking that the server still serves the listing those
        batches came from (``state["fingerprint"]``; a state without one is
        not checked): if not, as ``on_change`` says.

        Raises
        ------
        loaderd.InvalidRequest
            If the state was saved with another dataset, batch size, world
            size, drop_last or shuffle: the positions would not mean the same
            samples.
        """
        for k in _STATE_KEYS:
            if k in state and state[k] != getattr(self, k):
                raise InvalidRequest(
                    f"LoaderdDataset state was saved with {k}={state[k]!r}, this dataset has "
                    f"{k}={getattr(self, k)!r}: a position means the same samples only with the "
                    f"same {', '.join(_STATE_KEYS)}")
        self.epoch, self._position = int(state["epoch"]), int(state["batch"])
        self._fingerprint = state.get("fingerprint") or None
        self._restored = True

    # -- iterating -----------------------------------------------------

    def __iter__(self) -> Iterator[TorchBatch]:
        info = torch.utils.data.get_worker_info()
        if info is not None:
            raise InvalidRequest(
                f"LoaderdDataset is iterated in DataLoader worker {info.id} of {info.num_workers}: "
                "loaderd already decodes, augments and batches in its own workers and this "
                "dataset reads ahead on a thread, so worker processes would only add a copy "
                "(and each would stream the whole epoch); use DataLoader(ds, batch_size=None, "
                "num_workers=0) or iterate the dataset directly")
        # A new iteration goes on from the position; after a complete epoch it
        # starts that epoch again, unless the position was just restored (an
        # epoch saved complete stays complete).
        if self._position and not self._restored and self._position >= len(self):
            self._position, self._fingerprint = 0, None
        self._restored = False
        return self._iterate(self.epoch, self._position)

    def _iterate(self, epoch: int, start: int) -> Iterator[TorchBatch]:
        stream = self.client.batches(self.dataset, epoch, self.batch_size, self.rank,
                                     self.world_size, self.drop_last, self.shuffle,
                                     start_batch=start, gpu=self.gpu, transport=self.transport,
                                     on_change=self.on_change,
                                     fingerprint=self._fingerprint if start else None)
        if self.pin_memory:
            stream._allocate = _pinned  # read in place: gather straight into pinned memory
        reader = self._reader = _ReadAhead(stream, self.prefetch, self.pin_memory)
        try:
            for (images, labels, index), fingerprint in reader:
                if self.device is not None:
                    images = images.to(self.device, non_blocking=True)
                    labels = labels.to(self.device, non_blocking=True)
                if self.epoch == epoch:
                    self._position += 1
                    self._fingerprint = fingerprint
                yield TorchBatch(images, labels, index)
        finally:
            reader.close()
            if self._reader is reader:
                self._reader = None


def _pinned(shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A page-locked batch buffer for the local transport to gather into: the
    numpy view of a pinned tensor, which it keeps alive (its ``base``)."""
    return torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype, pin_memory=True).numpy()


class _ReadAhead:
    """Iterates a BatchStream on a background thread, `depth` batches ahead,
    converting each batch to tensors (and pinning them) on that thread.
    Yields each batch's tensors with the dataset fingerprint it came from."""

    _END = object()

    def __init__(self, stream: BatchStream, depth: int, pin: bool):
        self.stream, self.pin = stream, pin
        self.queue: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="loaderd-read-ahead", daemon=True)
        self.thread.start()

    def _tensors(self, b: Batch) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images = _from_numpy(b.images)  # pinned already when gathered into _pinned memory
        labels = _from_numpy(b.labels)
        index = _from_numpy(b.index.view(np.int64))
        if self.pin:
            if not images.is_pinned():
                images = images.pin_memory()
            labels = labels.pin_memory()
        return images, labels, index

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for b in self.stream:
                if not self._put((self._tensors(b), self.stream.fingerprint)):
                    return
            self._put(self._END)
        except BaseException as e:  # handed to the consumer, raised there
            self._put(e)

    def __iter__(self) -> Iterator[Tuple[Tuple[torch.Tensor, torch.Tensor, torch.Tensor], Optional[str]]]:
        while True:
            item = self.queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stops the thread and the stream; safe to call twice."""
        self.stop.set()
        self.stream.cancel()
        self.thread.join()
        self.stream.close()
