"""The exceptions of the loaderd package and how gRPC statuses become them."""

from __future__ import annotations

import re
from typing import Any, Dict, Optional

import pyarrow as pa
import pyarrow.flight as flight

__all__ = [
    "Error",
    "Unavailable",
    "Unauthenticated",
    "DatasetNotFound",
    "InvalidRequest",
    "DatasetChanged",
    "ResourceExhausted",
    "DataLoss",
    "ServerError",
]


class Error(Exception):
    """Base class of every error this package raises.

    Attributes
    ----------
    code : str or None
        The gRPC status code the server answered with (``"NOT_FOUND"``,
        ``"UNAVAILABLE"``, ...), or None for errors found on the client's side.
    server_message : str or None
        The server's own message, without the advice this package adds.
    address : str or None
        The Flight location that was called.
    """

    def __init__(self, message: str, *, code: Optional[str] = None,
                 server_message: Optional[str] = None, address: Optional[str] = None):
        super().__init__(message)
        self.code = code
        self.server_message = server_message
        self.address = address


class Unavailable(Error, ConnectionError):
    """loaderd cannot be reached (wrong address, not running, TLS mismatch),
    is shutting down, or cannot read a sample file. Mid-stream, the client
    reconnects and resumes by itself for up to ``retry_timeout`` seconds
    before raising this (not for an unreadable file: ``retryable`` False)."""

    retryable = True


class Unauthenticated(Error, PermissionError):
    """The server wants a bearer token (``serve --auth-token-file``) and the
    call carried none or a different one."""


class DatasetNotFound(Error, LookupError):
    """The server serves no dataset of that name."""


class InvalidRequest(Error, ValueError):
    """The request is malformed or out of range; the message names the field."""


class DatasetChanged(Error):
    """The dataset's files changed on the server under a stream: a ticket
    planned on the old listing is stale, or a file the stream still needed
    was rewritten or removed (the server's message names it).

    A stream that has delivered no batch of its epoch yet plans again by
    itself on the new listing (once). Once batches of the epoch have been
    delivered, the rest of the epoch cannot follow the old listing (the
    server serves only the new one, whose order and indices differ): the
    stream raises this, or with ``on_change="continue"`` goes on from the
    same batch of the new listing with a warning (:meth:`Client.batches`).

    Attributes
    ----------
    epoch : int or None
        The epoch of the stream.
    batch : int or None
        Batches of the epoch delivered before the change (the position to
        save, as ``start_batch`` counts it); None when not known.
    fingerprint : str or None
        The dataset fingerprint of the listing those batches came from.
    """

    def __init__(self, message: str, *, epoch: Optional[int] = None, batch: Optional[int] = None,
                 fingerprint: Optional[str] = None, **kw):
        super().__init__(message, **kw)
        self.epoch, self.batch, self.fingerprint = epoch, batch, fingerprint


class ResourceExhausted(Error):
    """The server is at its ``--max-streams`` limit or its ``--cache-budget``."""


class DataLoss(Error):
    """A sample could not be decoded and the server runs ``--on-error fail``."""


class LocalUnavailable(Error):
    """The cache cannot be read in place (``transport="local"``): the server is
    on another host, serves no local streams, or this process cannot read its
    cache directory (docs/SPEC.md §9). ``transport="auto"`` streams over Flight
    instead."""


class ServerError(Error):
    """Any other failure on the server's side (Internal, Unknown, Unimplemented)."""


# pyarrow's Flight client words each gRPC status as "Flight returned <what>
# error, with message: <msg>" (codes with their own Flight status) or "gRPC
# returned <what> error, with message: <msg>" (the others), and may append
# gRPC's debug context.
_STATUS = re.compile(r"(?:Flight|gRPC) returned (.+?) error, with message: (.*)", re.S)
_DEBUG = re.compile(r"\. gRPC client debug context: .*$", re.S)
_DETAIL = re.compile(r"\. Detail: [A-Za-z]+$")

_CODES = {
    "invalid argument": "INVALID_ARGUMENT",
    "not found": "NOT_FOUND",
    "precondition failed": "FAILED_PRECONDITION",
    "resource exhausted": "RESOURCE_EXHAUSTED",
    "unavailable": "UNAVAILABLE",
    "unauthenticated": "UNAUTHENTICATED",
    "unauthorized": "PERMISSION_DENIED",
    "data loss": "DATA_LOSS",
    "internal": "INTERNAL",
    "unknown": "UNKNOWN",
    "unimplemented": "UNIMPLEMENTED",
    "cancelled": "CANCELLED",
    "timed out": "DEADLINE_EXCEEDED",
    "aborted": "ABORTED",
    "out-of-range": "OUT_OF_RANGE",
    "already exists": "ALREADY_EXISTS",
}

# When the message carries no status word, the exception's class decides.
_CLASSES = [
    (flight.FlightUnauthenticatedError, "UNAUTHENTICATED"),
    (flight.FlightUnauthorizedError, "PERMISSION_DENIED"),
    (flight.FlightUnavailableError, "UNAVAILABLE"),
    (flight.FlightTimedOutError, "DEADLINE_EXCEEDED"),
    (flight.FlightCancelledError, "CANCELLED"),
    (flight.FlightInternalError, "INTERNAL"),
    (pa.ArrowKeyError, "NOT_FOUND"),
    (pa.ArrowInvalid, "INVALID_ARGUMENT"),
    (pa.ArrowNotImplementedError, "UNIMPLEMENTED"),
]


def status_of(exc: BaseException) -> tuple[str, str]:
    """The gRPC status code name and the server's message behind a pyarrow
    Flight exception."""
    text = str(exc)
    m = _STATUS.search(text)
    if m:
        msg = _DETAIL.sub("", _DEBUG.sub("", m.group(2))).strip()
        return _CODES.get(m.group(1).lower(), "UNKNOWN"), msg
    for cls, code in _CLASSES:
        if isinstance(exc, cls):
            return code, text
    return "UNKNOWN", text


def translate(exc: BaseException, address: str, *, token_given: bool = False,
              tls: bool = False) -> Error:
    """The loaderd.Error for a pyarrow exception raised by a call to address,
    with a message that says what to do."""
    code, msg = status_of(exc)
    kw: Dict[str, Any] = dict(code=code, server_message=msg, address=address)
    if code == "UNAVAILABLE":
        if msg.startswith("loader: cannot read"):
            e = Unavailable(
                f"loaderd at {address}: {msg}; the server retried and cannot read that sample "
                "file: check the file and its storage (`loaderd scan` lists unreadable files)", **kw)
            e.retryable = False
            return e
        if "shutting down" in msg or "draining" in msg:
            hint = "it is shutting down; retry once it is back"
        elif tls or "ssl" in msg.lower() or "handshake" in msg.lower():
            hint = ("check the address and TLS: a grpc+tls:// server needs a grpc+tls:// "
                    "address and, for a private CA, tls_root_certs; a plain server needs grpc://")
        else:
            hint = "is `loaderd serve` running and listening there (--listen)?"
        return Unavailable(f"cannot reach loaderd at {address}: {msg}; {hint}", **kw)
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        what = ("the token given is not the server's" if token_given
                else "the server wants a token and none was given")
        return Unauthenticated(
            f"loaderd at {address} refused the call ({msg}): {what}; pass token= the "
            "contents of the file the server was started with (--auth-token-file)", **kw)
    if code == "NOT_FOUND":
        return DatasetNotFound(f"loaderd at {address}: {msg}", **kw)
    if code in ("INVALID_ARGUMENT", "OUT_OF_RANGE"):
        return InvalidRequest(f"loaderd at {address} refused the request: {msg}", **kw)
    if code == "FAILED_PRECONDITION" and "local transport unavailable" in msg:
        return LocalUnavailable(
            f"loaderd at {address} will not serve this process from its cache in place: {msg}; "
            "use transport=\"auto\" (falls back to Flight) or \"flight\"", **kw)
    if code == "FAILED_PRECONDITION":
        return DatasetChanged(
            f"loaderd at {address}: {msg}: the dataset's files changed on the server "
            "since this stream was planned; plan it again (a new Client.batches call) "
            "once the files stop changing", **kw)
    if code == "RESOURCE_EXHAUSTED":
        return ResourceExhausted(
            f"loaderd at {address}: {msg}: too many streams (serve --max-streams) or a full "
            "cache (--cache-budget); end other streams, raise the limit, or evict epochs "
            "(Client.evict)", **kw)
    if code == "DATA_LOSS":
        return DataLoss(
            f"loaderd at {address}: {msg}: the server runs --on-error fail and met an "
            "undecodable sample; fix or remove the file (`loaderd scan` lists them) or "
            "serve with --on-error substitute", **kw)
    return ServerError(f"loaderd at {address} failed ({code}): {msg}; its log says more", **kw)
