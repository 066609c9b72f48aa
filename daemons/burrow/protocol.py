"""The wire contract between producer and consumer: content type, headers and reply encoding.

A request is the raw body with ``correlation_id``, ``reply_to``, ``message_id`` and the header
``x-burrow-deadline`` (UNIX time in milliseconds after which nobody waits for the answer). A reply carries the same
correlation id; an error reply has ``x-burrow-status: error`` plus the remote exception's type name
and message (and its traceback only when the consumer is configured to include it).
"""

from __future__ import annotations

from typing import Any

import pika

from burrow.errors import RemoteError

CONTENT_TYPE = "application/octet-stream"
HEADER_DEADLINE = "x-burrow-deadline"
HEADER_STATUS = "x-burrow-status"
HEADER_ERROR_TYPE = "x-burrow-error-type"
HEADER_TRACEBACK = "x-burrow-traceback"
STATUS_OK = "ok"
STATUS_ERROR = "error"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def decode_reply(properties: pika.BasicProperties, body: bytes) -> tuple[bool, bytes | RemoteError]:
    """Return ``(True, body)`` for a normal reply or ``(False, RemoteError)`` for an error reply."""
    headers = properties.headers or {}
    if _text(headers.get(HEADER_STATUS, STATUS_OK)) != STATUS_ERROR:
        return True, body
    traceback = headers.get(HEADER_TRACEBACK)
    return False, RemoteError(
        _text(headers.get(HEADER_ERROR_TYPE, "Exception")),
        body.decode("utf-8", "replace"),
        _text(traceback) if traceback is not None else None,
    )


def request_deadline(properties: pika.BasicProperties) -> float | None:
    """The request's deadline in UNIX seconds, or None when absent or unreadable."""
    value = (properties.headers or {}).get(HEADER_DEADLINE)
    if isinstance(value, int) and not isinstance(value, bool):
        return value / 1000.0
    return None
