"""Every answer of the producer's HTTP API is built here, whichever layer sends it.

The application answers through an :class:`Exchange` (one per request); the protocol writes the
answers it gives before any application runs (a malformed request, a full server) with
:func:`raw_error`. Both go through :func:`answer_headers`, the one place where an answer's status
is final, so the per-status count (``burrow_producer_http_responses_total``) is taken there.
Error bodies are JSON: ``{"error": "...", "message": "...", ...}``.
"""

from __future__ import annotations

import http
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from burrow.daemon import prometheus
from burrow.errors import DeliveryLimitExceeded, Rejected, RequestTimeout

Headers = list[tuple[bytes, bytes]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Draining(Protocol):
    """The server, as far as an answer cares: while it drains, every answer closes its connection."""

    @property
    def draining(self) -> bool: ...


def answer_headers(
    status: int,
    body: bytes,
    content_type: str,
    *,
    request_id: str = "",
    correlation_id: str = "",
    close: bool = False,
    extra: Mapping[str, str] | None = None,
) -> Headers:
    """The response headers of one answer, counted by status."""
    prometheus.http_answered(status)
    headers: Headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if request_id:
        headers.append((b"x-burrow-request-id", request_id.encode()))
    if correlation_id:
        headers.append((b"x-burrow-correlation-id", correlation_id.encode("latin-1")))
    for name, value in (extra or {}).items():
        headers.append((name.lower().encode(), value.encode("latin-1")))
    if close:
        headers.append((b"connection", b"close"))
    return headers


def error_document(
    code: str, message: str, request_id: str = "", correlation_id: str = "", fields: Mapping[str, Any] | None = None
) -> bytes:
    """The JSON body of an error answer: its code, a sentence for people, and the request's ids."""
    document: dict[str, Any] = {"error": code, "message": message, **(fields or {})}
    if request_id:
        document["request_id"] = request_id
    if correlation_id:
        document["correlation_id"] = correlation_id
    return (json.dumps(document) + "\n").encode()


def raw_error(
    status: int, message: str, extra: Mapping[str, str] | None = None, code: str = "", header: str = ""
) -> bytes:
    """A complete ``Connection: close`` JSON error response, for answers written by the protocol.

    ``code`` defaults to the status's phrase in snake case (``request_header_fields_too_large``);
    ``header`` names the request header at fault, when one is.
    """
    body = error_document(code or status_code(status), message, fields={"header": header} if header else None)
    headers = answer_headers(status, body, "application/json", close=True, extra=extra)
    return STATUS_LINE[status] + b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n" + body


def status_code(status: int) -> str:
    """``request_header_fields_too_large`` for 431: the error code of a protocol-level answer."""
    return http.HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")


class Exchange:
    """One request's ids and its answer, sent through the ASGI ``send`` of its connection."""

    __slots__ = ("correlation_id", "request_id", "scope", "send", "server", "traceparent")

    def __init__(self, server: Draining, scope: dict[str, Any], send: Send) -> None:
        self.server = server
        self.scope = scope
        self.send = send
        self.request_id = ""
        self.correlation_id = ""
        self.traceparent = ""

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/octet-stream",
        *,
        close: bool = False,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        """Send the whole answer; it closes the connection when asked to or while the server drains.

        Without ``extra`` headers (their values may come from a consumer) every header is one
        burrow made from checked values, and the protocol writes the answer at once
        (``burrow.daemon.http.protocol.write_whole``); otherwise it goes through ``send``.
        """
        headers = answer_headers(
            status, body, content_type, request_id=self.request_id, correlation_id=self.correlation_id,
            close=close or self.server.draining, extra=extra,
        )
        if self.traceparent:
            headers.append((b"traceparent", self.traceparent.encode()))
        if not extra:
            answer = self.scope["extensions"]["burrow"].get("answer")
            if answer is not None and answer(status, headers, body):
                return
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    async def error(
        self,
        status: int,
        code: str,
        message: str,
        *,
        close: bool = False,
        retry_after: int | None = None,
        allow: tuple[str, ...] | None = None,
        remote_type: str | None = None,
        rejected: Rejected | None = None,
        timed_out: RequestTimeout | None = None,
        header: str | None = None,
    ) -> None:
        """Answer an error document; a rejection and a remote error also say why in headers, an
        unusable request header is named in the document's ``header``, and a timeout says in
        ``confirmed`` whether the broker had confirmed the request (``null``: not known)."""
        extra: dict[str, str] = {}
        fields: dict[str, Any] = {}
        if header is not None:
            fields["header"] = header
        if rejected is not None:
            fields["reason"] = rejected.reason
            extra["X-Burrow-Reject-Reason"] = rejected.reason
            if isinstance(rejected, DeliveryLimitExceeded):
                fields["delivery_count"] = rejected.delivery_count
        if timed_out is not None:
            fields["confirmed"] = timed_out.confirmed
        if remote_type is not None:
            fields["type"] = remote_type
            extra["X-Burrow-Error-Type"] = remote_type
        body = error_document(code, message, self.request_id, self.correlation_id, fields)
        if retry_after is not None:
            extra["Retry-After"] = str(retry_after)
        if allow is not None:
            extra["Allow"] = ", ".join(allow)
        await self.respond(status, body, "application/json", close=close, extra=extra)

    async def json(self, status: int, document: dict[str, Any]) -> None:
        """Answer ``document`` as JSON."""
        await self.respond(status, (json.dumps(document) + "\n").encode(), "application/json")


__all__ = ["Draining", "Exchange", "Headers", "Send", "answer_headers", "error_document", "raw_error", "status_code"]
