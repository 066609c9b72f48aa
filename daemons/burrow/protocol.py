"""The wire contract between producer and consumer: how a request and a reply look on the wire.

A request is the raw body, published persistent and ``mandatory`` with ``correlation_id`` (also its
``message_id``), ``reply_to``, an AMQP ``expiration`` of the time it has left, and the header
``x-burrow-deadline`` (UNIX time in milliseconds after which nobody waits for the answer): built by
:func:`request_headers` and :func:`request_properties`, checked by :func:`validate_request`.

A reply carries the same correlation id; an error reply has ``x-burrow-status: error`` plus the
remote exception's type name and message (and its traceback only when the consumer is configured to
include it). The consumer's worker describes the reply as an :class:`Outcome`, the I/O thread
publishes it with :func:`reply_properties`, and the producer turns it back into a result or a
:class:`~burrow.errors.RemoteError` with :func:`decode_reply`.
"""

from __future__ import annotations

import traceback as traceback_module
from dataclasses import dataclass
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


# ----------------------------------------------------------------------------------- requests


def request_headers(headers: dict[str, Any] | None, wall_deadline: float) -> dict[str, Any]:
    """The caller's headers plus the deadline (``wall_deadline`` in UNIX seconds) as published."""
    return {**(headers or {}), HEADER_DEADLINE: int(wall_deadline * 1000)}


def request_properties(
    correlation_id: str, reply_to: str, headers: dict[str, Any], remaining_ms: int, now_wall: float
) -> pika.BasicProperties:
    """AMQP properties of a request with ``remaining_ms`` left: the broker drops it when that expires."""
    return pika.BasicProperties(
        content_type=CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent,
        correlation_id=correlation_id,
        message_id=correlation_id,
        reply_to=reply_to,
        expiration=str(remaining_ms),
        timestamp=int(now_wall),
        headers=headers,
    )


def request_deadline(properties: pika.BasicProperties) -> float | None:
    """The request's deadline in UNIX seconds, or None when absent or unreadable."""
    value = (properties.headers or {}).get(HEADER_DEADLINE)
    if isinstance(value, int) and not isinstance(value, bool):
        return value / 1000.0
    return None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a request is not handled but dead-lettered; ``stale`` when only its deadline passed."""

    reason: str
    stale: bool = False


def validate_request(
    properties: pika.BasicProperties, body: bytes, *, max_message_bytes: int, content_types: tuple[str, ...], now: float
) -> Rejection | None:
    """None for a request the handler may see, else the reason to dead-letter it.

    Malformed: no ``reply_to`` or ``correlation_id``, a body over ``max_message_bytes``, a content
    type not in ``content_types``, or a ``text/*`` body that is not UTF-8. Stale: its deadline is
    before ``now`` (UNIX seconds), so nobody waits for the answer any more.
    """
    if not properties.reply_to:
        return Rejection("no reply_to")
    if not properties.correlation_id:
        return Rejection("no correlation_id")
    if len(body) > max_message_bytes:
        return Rejection(f"body of {len(body)} bytes exceeds consumer.max_message_bytes ({max_message_bytes})")
    content_type = properties.content_type
    if content_type is not None:
        base = content_type.split(";", 1)[0].strip().lower()
        if base not in content_types:
            return Rejection(f"content type {content_type!r} not in consumer.content_types")
        if base.startswith("text/"):
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                return Rejection(f"declared {base} but the body is not valid UTF-8 ({exc.reason} at byte {exc.start})")
    deadline = request_deadline(properties)
    if deadline is not None and now > deadline:
        return Rejection("expired before processing (deadline passed)", stale=True)
    return None


# ----------------------------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the handler produced: the reply body, and for a failure the exception's type name."""

    body: bytes
    error_type: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None

    @classmethod
    def failure(cls, exc: BaseException, *, include_traceback: bool) -> "Outcome":
        """The error reply for ``exc`` (call inside its ``except`` block to include the traceback)."""
        return cls(
            body=str(exc).encode("utf-8", "replace"),
            error_type=type(exc).__name__,
            traceback=traceback_module.format_exc() if include_traceback else None,
        )


def reply_headers(outcome: Outcome) -> dict[str, Any]:
    if outcome.ok:
        return {HEADER_STATUS: STATUS_OK}
    headers: dict[str, Any] = {HEADER_STATUS: STATUS_ERROR, HEADER_ERROR_TYPE: outcome.error_type}
    if outcome.traceback is not None:
        headers[HEADER_TRACEBACK] = outcome.traceback
    return headers


def reply_properties(correlation_id: str, outcome: Outcome, *, persistent: bool) -> pika.BasicProperties:
    """AMQP properties of the reply to ``correlation_id`` (transient for direct reply-to)."""
    return pika.BasicProperties(
        content_type=CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent if persistent else pika.DeliveryMode.Transient,
        correlation_id=correlation_id,
        headers=reply_headers(outcome),
    )


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
