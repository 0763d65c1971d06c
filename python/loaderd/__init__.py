"""The trainer's side of loaderd.

loaderd decodes and augments training images once, caches the augmented
epochs as Arrow IPC shards and streams them over Arrow Flight. This package
reads those streams:

- :class:`Client` — every call of loaderd's Flight API (docs/SPEC.md §4):
  :meth:`Client.batches` yields :class:`Batch` es of numpy arrays that share
  Arrow's memory.
- :mod:`loaderd.torch` — :class:`~loaderd.torch.LoaderdDataset`, a PyTorch
  IterableDataset for DDP training with read-ahead and exact mid-epoch resume
  (needs ``loaderd[torch]``).

Errors are subclasses of :class:`Error`, one per condition, each message
saying what to do.
"""

from pathlib import Path as _Path

from . import _deps

_deps.check()  # numpy and pyarrow, or an ImportError saying how to install them

from ._client import Batch, BatchStream, Client, DatasetInfo, Plan  # noqa: E402
from ._errors import (  # noqa: E402
    DataLoss,
    DatasetChanged,
    DatasetNotFound,
    Error,
    InvalidRequest,
    LocalUnavailable,
    ResourceExhausted,
    ServerError,
    Unauthenticated,
    Unavailable,
)

#: The release version; always the ``loaderd`` binary's (both read python/loaderd/VERSION).
__version__ = (_Path(__file__).parent / "VERSION").read_text().strip()

__all__ = [
    "Batch",
    "BatchStream",
    "Client",
    "DatasetInfo",
    "Plan",
    "Error",
    "Unavailable",
    "Unauthenticated",
    "DatasetNotFound",
    "InvalidRequest",
    "DatasetChanged",
    "ResourceExhausted",
    "DataLoss",
    "LocalUnavailable",
    "ServerError",
    "__version__",
]
