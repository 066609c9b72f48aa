"""The wire contract between producer and consumer: content type, headers and reply encoding.

A request is the raw body with ``correlation_id``, ``reply_to``, ``message_id`` and the header
``x-burrow-deadline`` (UNIX time in milliseconds after which nobody waits for the answer). A reply carries the same
correlation id; an error reply has ``x-burrow-status: error`` plus the remote exception's type name
and message (and its traceback only when the consumer is configured to include it). A rejection
notice has ``x-burrow-status: rejected``, the reason code in ``x-burrow-reject-reason`` and the
explanation as its body; one for a request past the delivery limit also carries the delivery count
and the broker's first death reason, queue and time.
"""

from __future__ import annotations

from typing import Any

import pika

from burrow.errors import DeliveryLimitExceeded, Rejected, RemoteError

CONTENT_TYPE = "application/octet-stream"
HEADER_DEADLINE = "x-burrow-deadline"
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
REJECT_TOO_LARGE = "too_large"
REJECT_CONTENT_TYPE = "content_type"
REJECT_INVALID_UTF8 = "invalid_utf8"
REJECT_STALE = "stale"
REJECT_DELIVERY_LIMIT = "delivery_limit"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def rejection_headers(reason: str) -> dict[str, Any]:
    """Headers of the notice that tells a caller its request was rejected for ``reason``."""
    return {HEADER_STATUS: STATUS_REJECTED, HEADER_REJECT_REASON: reason}


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


def request_deadline(properties: pika.BasicProperties) -> float | None:
    """The request's deadline in UNIX seconds, or None when absent or unreadable."""
    value = _int((properties.headers or {}).get(HEADER_DEADLINE))
    return None if value is None else value / 1000.0
