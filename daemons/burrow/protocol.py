"""The wire contract between producer and consumer: how a request and a reply look on the wire.

A request is the raw body, published persistent and ``mandatory`` with ``correlation_id`` (also its
``message_id``), ``reply_to``, an AMQP ``expiration`` of the time it has left, and the header
``x-burrow-deadline`` (UNIX time in milliseconds after which nobody waits for the answer): built by
:func:`request_headers` and :func:`request_properties`, checked by :func:`validate_request`.

A reply carries the same correlation id; an error reply has ``x-burrow-status: error`` plus the
remote exception's type name and message (and its traceback only when the consumer is configured to
include it). A rejection notice has ``x-burrow-status: rejected``, the reason code in
``x-burrow-reject-reason`` and the explanation as its body; one for a request past the delivery
limit also carries the delivery count and the broker's first death reason, queue and time. The
consumer describes a reply as an :class:`Outcome`, publishes it with :func:`reply_properties`, and
the producer turns it back into a result, a :class:`~burrow.errors.RemoteError` or a
:class:`~burrow.errors.Rejected` with :func:`decode_reply`.

Clients in other languages read the same contract in ``docs/asyncapi.yaml``; a header, status or
reject reason added here must be named there too (``tests/unit/test_asyncapi.py`` fails until it is).
"""

from __future__ import annotations

import traceback as traceback_module
from dataclasses import dataclass
from typing import Any

import pika

from burrow import tracing
from burrow.errors import DeliveryLimitExceeded, Rejected, RemoteError

CONTENT_TYPE = "application/octet-stream"
HEADER_DEADLINE = "x-burrow-deadline"
#: What a split service's consistent-hash exchange hashes (:mod:`burrow.partitions`).
HEADER_KEY = "x-burrow-key"
HEADER_STATUS = "x-burrow-status"
HEADER_ERROR_TYPE = "x-burrow-error-type"
HEADER_TRACEBACK = "x-burrow-traceback"
HEADER_REJECT_REASON = "x-burrow-reject-reason"
HEADER_DELIVERY_COUNT = "x-burrow-delivery-count"
HEADER_FIRST_DEATH_REASON = "x-burrow-first-death-reason"
HEADER_FIRST_DEATH_QUEUE = "x-burrow-first-death-queue"
HEADER_DIED_AT = "x-burrow-died-at"
STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_REJECTED = "rejected"

#: Reasons a request is rejected (the ``reason`` of :class:`~burrow.errors.Rejected`).
REJECT_MALFORMED = "malformed"
REJECT_TOO_LARGE = "too_large"
REJECT_CONTENT_TYPE = "content_type"
REJECT_INVALID_UTF8 = "invalid_utf8"
REJECT_STALE = "stale"
REJECT_DELIVERY_LIMIT = "delivery_limit"
#: Not sent to the caller (its reply address is gone), only counted: the reply came back unroutable.
REJECT_REPLY_UNROUTABLE = "reply_unroutable"
#: Not sent either: the reply came back unroutable to a ``reply_to`` that is no burrow reply queue,
#: from a caller that expects its reply through the default exchange (see :func:`unroutable_reply`).
REJECT_REPLY_DEFAULT_EXCHANGE = "reply_via_default_exchange"
#: Where other teams read this contract; log lines about a foreign caller's mistake point there.
CONTRACT_DOCUMENT = "docs/asyncapi.yaml"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ----------------------------------------------------------------------------------- requests


def request_headers(headers: dict[str, Any] | None, wall_deadline: float) -> dict[str, Any]:
    """The caller's headers plus the deadline (``wall_deadline`` in UNIX seconds) as published, and a
    W3C ``traceparent``: the caller's, or a new trace's (:mod:`burrow.tracing`)."""
    return {**tracing.with_traceparent(headers), HEADER_DEADLINE: int(wall_deadline * 1000)}


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
    return headers_deadline(properties.headers or {})


def headers_deadline(headers: dict[str, Any]) -> float | None:
    """The deadline (UNIX seconds) that a request's ``headers`` carry, or None when absent or unreadable."""
    value = _int(headers.get(HEADER_DEADLINE))
    return None if value is None else value / 1000.0


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a request is not handled but dead-lettered: a ``REJECT_*`` code and the explanation."""

    code: str
    reason: str

    @property
    def stale(self) -> bool:
        return self.code == REJECT_STALE


def validate_request(
    properties: pika.BasicProperties, body: bytes, *, max_message_bytes: int, content_types: tuple[str, ...], now: float
) -> Rejection | None:
    """None for a request the handler may see, else the reason to dead-letter it.

    Malformed: no ``reply_to`` or ``correlation_id``, a body over ``max_message_bytes``, a content
    type not in ``content_types``, or a ``text/*`` body that is not UTF-8. Stale: its deadline is
    before ``now`` (UNIX seconds), so nobody waits for the answer any more.
    """
    if not properties.reply_to:
        return Rejection(REJECT_MALFORMED, "no reply_to")
    if not properties.correlation_id:
        return Rejection(REJECT_MALFORMED, "no correlation_id")
    if len(body) > max_message_bytes:
        return Rejection(REJECT_TOO_LARGE, f"body of {len(body)} bytes exceeds consumer.max_message_bytes ({max_message_bytes})")
    content_type = properties.content_type
    if content_type is not None:
        base = content_type.split(";", 1)[0].strip().lower()
        if base not in content_types:
            return Rejection(REJECT_CONTENT_TYPE, f"content type {content_type!r} not in consumer.content_types")
        if base.startswith("text/"):
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                return Rejection(REJECT_INVALID_UTF8, f"declared {base} but the body is not valid UTF-8 ({exc.reason} at byte {exc.start})")
    deadline = request_deadline(properties)
    if deadline is not None and now > deadline:
        return Rejection(REJECT_STALE, "expired before processing (deadline passed)")
    return None


def is_burrow_reply_queue(reply_to: str, reply_queue_prefix: str) -> bool:
    """Whether ``reply_to`` names a burrow producer's reply queue (``topology.reply_queue_prefix``
    followed by a dot), as opposed to a queue of a caller outside burrow."""
    return reply_to.startswith(f"{reply_queue_prefix}.")


def unroutable_reply(reply_to: str, returned: str, *, reply_exchange: str, reply_queue_prefix: str) -> Rejection:
    """Why a request whose reply the broker returned as unroutable (``returned``) is dead-lettered.

    A ``reply_to`` under ``reply_queue_prefix`` is a burrow producer's reply queue that is gone
    (``reply_unroutable``). Any other is a caller outside burrow that set ``reply_to`` to its own
    queue and expects the reply through the default exchange, as RabbitMQ's RPC tutorial does;
    burrow never publishes there (its broker user has no write on the default exchange, which would
    reach every queue of the virtual host). That caller cannot be told, so the reason, which the
    consumer logs and counts, names the pattern and the two reply paths that work.
    """
    if is_burrow_reply_queue(reply_to, reply_queue_prefix):
        return Rejection(REJECT_REPLY_UNROUTABLE, returned)
    return Rejection(
        REJECT_REPLY_DEFAULT_EXCHANGE,
        f"{returned}; the caller seems to expect its reply through the default exchange (the RPC tutorial "
        f"pattern), which burrow does not use: bind the reply queue to {reply_exchange} under its own name, "
        f"or use amq.rabbitmq.reply-to (wire contract: {CONTRACT_DOCUMENT})",
    )


# ----------------------------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one request: the handler's reply body, or for a failure the exception's type
    name, or for a request burrow rejects the ``rejected`` reason code with the explanation as body."""

    body: bytes
    error_type: str | None = None
    traceback: str | None = None
    rejected: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None and self.rejected is None

    @classmethod
    def rejection(cls, rejection: Rejection) -> "Outcome":
        """The notice that tells the caller why its request is dead-lettered unanswered."""
        return cls(body=rejection.reason.encode("utf-8", "replace"), rejected=rejection.code)

    @classmethod
    def failure(cls, exc: BaseException, *, include_traceback: bool) -> "Outcome":
        """The error reply for ``exc`` (call inside its ``except`` block to include the traceback)."""
        return cls(
            body=str(exc).encode("utf-8", "replace"),
            error_type=type(exc).__name__,
            traceback=traceback_module.format_exc() if include_traceback else None,
        )


def rejection_headers(reason: str) -> dict[str, Any]:
    """Headers of the notice that tells a caller its request was rejected for ``reason``."""
    return {HEADER_STATUS: STATUS_REJECTED, HEADER_REJECT_REASON: reason}


def reply_headers(outcome: Outcome) -> dict[str, Any]:
    if outcome.rejected is not None:
        return rejection_headers(outcome.rejected)
    if outcome.ok:
        return {HEADER_STATUS: STATUS_OK}
    headers: dict[str, Any] = {HEADER_STATUS: STATUS_ERROR, HEADER_ERROR_TYPE: outcome.error_type}
    if outcome.traceback is not None:
        headers[HEADER_TRACEBACK] = outcome.traceback
    return headers


def reply_properties(
    correlation_id: str, outcome: Outcome, *, persistent: bool, traceparent: str | None = None
) -> pika.BasicProperties:
    """AMQP properties of the reply to ``correlation_id`` (transient for direct reply-to), carrying
    its request's ``traceparent``."""
    return pika.BasicProperties(
        content_type=CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent if persistent else pika.DeliveryMode.Transient,
        correlation_id=correlation_id,
        headers=tracing.propagate({tracing.HEADER: traceparent} if traceparent else None, reply_headers(outcome)),
    )


def decode_rejection(headers: dict[str, Any], body: bytes) -> Rejected:
    """The typed failure a rejection notice stands for."""
    reason = _text(headers.get(HEADER_REJECT_REASON, "rejected"))
    message = body.decode("utf-8", "replace")
    if reason != REJECT_DELIVERY_LIMIT:
        return Rejected(reason, message)
    died_at = _int(headers.get(HEADER_DIED_AT))
    return DeliveryLimitExceeded(
        message,
        delivery_count=_int(headers.get(HEADER_DELIVERY_COUNT)),
        first_death_reason=_text(headers.get(HEADER_FIRST_DEATH_REASON, "")),
        first_death_queue=_text(headers.get(HEADER_FIRST_DEATH_QUEUE, "")),
        died_at=None if died_at is None else died_at / 1000.0,
    )


def decode_reply(properties: pika.BasicProperties, body: bytes) -> tuple[bool, bytes | RemoteError | Rejected]:
    """Return ``(True, body)`` for a normal reply, or ``(False, error)`` for an error reply
    (:class:`RemoteError`) or a rejection notice (:class:`Rejected`)."""
    headers = properties.headers or {}
    status = _text(headers.get(HEADER_STATUS, STATUS_OK))
    if status == STATUS_REJECTED:
        return False, decode_rejection(headers, body)
    if status != STATUS_ERROR:
        return True, body
    traceback = headers.get(HEADER_TRACEBACK)
    return False, RemoteError(
        _text(headers.get(HEADER_ERROR_TYPE, "Exception")),
        body.decode("utf-8", "replace"),
        _text(traceback) if traceback is not None else None,
    )
