"""Reading one request's inputs: its headers, its numeric headers and its body, each bounded.

The application calls these before it publishes anything: a header it cannot use is answered
400 naming the header (:class:`BadHeader`), and a body is read only until the request's read
deadline, which the protocol set when its first byte arrived.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

from burrow.daemon.http.answers import Headers
from burrow.partitions import check_key

Receive = Callable[[], Awaitable[dict[str, Any]]]

#: Largest ``X-Burrow-Timeout`` accepted (seconds).
MAX_TIMEOUT = 86400.0
#: The body of a request answered without it (404, 405) is dropped as it arrives and the
#: connection kept up to this size; a larger one closes the connection after the answer.
DISCARD_LIMIT = 65536

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: A decimal number as people write one: no sign but "+", no "_", "inf", "nan" or hexadecimal,
#: all of which Python's float() would take.
_DECIMAL = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")


class BadHeader(ValueError):
    """A request header the API cannot use: answered 400 with error ``code``, ``header`` named."""

    def __init__(self, header: str, code: str, message: str) -> None:
        super().__init__(f"{header} {message}")
        self.header = header
        self.code = code


def header_map(raw: Headers) -> dict[bytes, bytes]:
    """Lower-case header names (uvicorn lowers them) -> value; a repeated header keeps its first value."""
    headers: dict[bytes, bytes] = {}
    for name, value in raw:
        headers.setdefault(name, value)
    return headers


def client_request_id(headers: dict[bytes, bytes]) -> str | None:
    """The caller's ``X-Burrow-Request-Id`` when it is a usable id, else None (one is made up)."""
    value = headers.get(b"x-burrow-request-id", b"").decode("latin-1")
    return value if _REQUEST_ID.match(value) else None


def request_key(headers: dict[bytes, bytes]) -> str | None:
    """The ``X-Burrow-Key`` that keeps requests on one partition of a split service
    (:mod:`burrow.partitions`), None when absent; :class:`BadHeader` when it cannot be a key."""
    raw_value = headers.get(b"x-burrow-key")
    if raw_value is None:
        return None
    value = raw_value.decode("latin-1")
    try:
        return check_key(value)
    except ValueError as exc:
        raise BadHeader("X-Burrow-Key", "bad_key", str(exc).removeprefix("request key ")) from None


def request_timeout(headers: dict[bytes, bytes]) -> float | None:
    """The ``X-Burrow-Timeout`` seconds, None when absent; :class:`BadHeader` unless it is a plain
    decimal number (``30``, ``2.5``, ``1e3``) in (0, MAX_TIMEOUT]."""
    raw_value = headers.get(b"x-burrow-timeout")
    if raw_value is None:
        return None
    value = raw_value.decode("latin-1").strip(" \t")
    seconds = float(value) if _DECIMAL.match(value) else math.nan
    if not 0 < seconds <= MAX_TIMEOUT:
        raise BadHeader("X-Burrow-Timeout", "bad_timeout", f"must be seconds in (0, {MAX_TIMEOUT:g}], got {value!r}")
    return seconds


def has_large_body(headers: dict[bytes, bytes]) -> bool:
    """A body not worth reading past on a request we refuse: close the connection after the answer."""
    length = headers.get(b"content-length", b"0")
    return b"transfer-encoding" in headers or int(length) > DISCARD_LIMIT


async def receive_body(scope: dict[str, Any], receive: Receive) -> bytes | None:
    """The body as received by the request's read deadline (shorter if the client left); None when late."""
    progress = scope["extensions"]["burrow"]
    if progress["complete"]:  # the usual case: the whole request came in one read, nothing to wait for
        message = await receive()
        return bytes(message.get("body", b""))
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout_at(progress["deadline"]):
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if message["type"] == "http.disconnect" or not message.get("more_body"):
                    return b"".join(chunks)
    except TimeoutError:
        return None


__all__ = [
    "DISCARD_LIMIT",
    "MAX_TIMEOUT",
    "BadHeader",
    "Receive",
    "client_request_id",
    "has_large_body",
    "header_map",
    "receive_body",
    "request_timeout",
]
