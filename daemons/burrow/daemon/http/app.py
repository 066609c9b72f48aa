"""The producer API's routes: what each endpoint does and which status every outcome gets.

Local applications send a request and get the consumer's reply in the response::

    curl --unix-socket /run/burrow/producer.sock --data-binary @request.bin http://burrow/v1/requests
    curl --unix-socket /run/burrow/producer.sock http://burrow/v1/health

Endpoints:

- ``POST /v1/requests``: body = request body (``Content-Length`` required, at most
  ``producer.max_message_bytes``); optional ``X-Burrow-Timeout: <seconds>`` overrides
  ``producer.request_timeout``; optional ``X-Burrow-Request-Id`` (else one is made up). Answers
  ``200`` with the reply body, ``504`` when the deadline passed (its ``"confirmed"`` says whether the
  broker had confirmed the request by then), ``502`` with the remote error when the
  handler raised, ``503`` while the broker is unreachable (after waiting up to
  ``producer.unavailable_wait`` for the connection to come back) or the producer refuses work, ``413`` over
  the size limit, ``411`` without ``Content-Length``, ``400`` for a bad ``X-Burrow-Timeout``. A
  request burrow dead-lettered is answered as soon as the caller is told, with
  :data:`REJECTED_STATUS` of its reason (413 too large, 415 content type, 422 invalid UTF-8, 504
  stale, 502 past the delivery limit) and ``X-Burrow-Reject-Reason``.
  Every answer carries ``X-Burrow-Request-Id`` and, once published, ``X-Burrow-Correlation-Id``.
  A W3C ``traceparent`` header continues the client's trace (else a new one starts): it goes with
  the request to the consumer and comes back on the answer, and both daemons log its ``TRACE_ID``.
- ``POST /v1/services/<name>``: the same for the named service (``/v1/requests`` is the default
  service); ``404`` with ``"error": "unknown_service"`` when no queue serves that name (no
  consumer ever declared it, or the name is not one a service can have). An optional
  ``X-Burrow-Key`` keeps requests with one key on one partition of a split service (``400
  bad_key`` when it is empty or over 255 bytes).
- ``GET /v1/health``: ``{"broker_connected": ..., "in_flight": ..., "reply_queue_type": ..., ...}``, 200 when
  connected, else 503.
- ``GET /metrics``: Prometheus text when metrics are enabled, else 404.

A new endpoint is a line in :data:`ROUTES` and a method of :class:`App`; every failure of a
request goes through :meth:`App._failed`, the one mapping of exceptions to statuses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import secrets
import time
import types
from collections.abc import Mapping
from typing import Any, Protocol

from burrow import tracing
from burrow.daemon import prometheus
from burrow.daemon.bridge import FutureBridge
from burrow.daemon.http.answers import Exchange, Send
from burrow.daemon.http.inputs import (
    BadHeader,
    Receive,
    client_request_id,
    has_large_body,
    header_map,
    receive_body,
    request_key,
    request_timeout,
)
from burrow.errors import (
    Backpressure,
    BrokerUnavailable,
    BurrowError,
    PublishError,
    Rejected,
    RemoteError,
    RequestTimeout,
    UnknownService,
)
from burrow.protocol import (
    REJECT_CONTENT_TYPE,
    REJECT_DELIVERY_LIMIT,
    REJECT_INVALID_UTF8,
    REJECT_STALE,
    REJECT_TOO_LARGE,
)
from burrow.services import DEFAULT_SERVICE, check_name

logger = logging.getLogger(__name__)

#: The status of a request burrow dead-lettered, by reject reason (others: 422). Too large and an
#: unacceptable content type have their own codes; a body the consumer cannot read is unprocessable;
#: a request that waited past its deadline timed out; one that crashed or stalled every consumer
#: failed upstream, like a handler error.
REJECTED_STATUS = {
    REJECT_TOO_LARGE: 413,
    REJECT_CONTENT_TYPE: 415,
    REJECT_INVALID_UTF8: 422,
    REJECT_STALE: 504,
    REJECT_DELIVERY_LIMIT: 502,
}

#: How often a request waiting for the broker connection (``producer.unavailable_wait``) looks again.
CONNECTED_POLL = 0.05
#: Extra seconds to wait for a future beyond the request's own deadline before giving up with 504.
RESULT_GRACE = 5.0
#: Pause between two ``submit`` attempts while the producer has ``max_in_flight`` requests out.
BACKPRESSURE_PAUSE = 0.005

#: Requests to a named service: this prefix, then the name.
SERVICES_PREFIX = "/v1/services/"
SERVICE_ROUTE = SERVICES_PREFIX + "<name>"
#: Path (a named service's as :data:`SERVICE_ROUTE`) -> the methods it answers; other methods get
#: 405 with an Allow header.
ROUTES: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {"/v1/requests": ("POST",), SERVICE_ROUTE: ("POST",), "/v1/health": ("GET",), "/metrics": ("GET",)}
)

class ProducerAPI(Protocol):
    """What the HTTP API needs from the producer (``burrow.producer.Producer`` provides it)."""

    #: "quorum", "classic" or "direct": where replies come back (shown by ``/v1/health``).
    reply_queue_type: str

    @property
    def connected(self) -> bool:
        """True while the broker connection is open and the topology declared."""

    @property
    def in_flight(self) -> int:
        """Requests published and not yet answered."""

    def submit(
        self,
        body: bytes,
        *,
        timeout: float | None = None,
        headers: dict[str, Any] | None = None,
        block: bool = True,
        service: str | None = None,
        key: str | None = None,
    ) -> concurrent.futures.Future[bytes]:
        """Publish ``body`` to ``service`` (None: the default one; ``key``: its partition); the
        future has ``correlation_id`` and resolves to the reply body."""


class ApiState(Protocol):
    """The server's settings and state as the application reads them (``HttpApi`` provides them);
    a SIGHUP reload changes the limits between two requests."""

    producer: ProducerAPI
    max_body: int
    default_timeout: float
    read_timeout: float
    unavailable_wait: float
    started_at: float

    @property
    def draining(self) -> bool: ...

    @property
    def connection_count(self) -> int: ...


class App:
    """The ASGI application: routing, the three endpoints and the mapping of failures to statuses."""

    def __init__(self, api: ApiState) -> None:
        self.api = api
        self.bridge: FutureBridge | None = None
        # Made-up request ids: 32 hex digits, a random 64-bit prefix per process and a counter
        # (unique across restarts without a uuid4() system call per request).
        self._id_prefix = f"{secrets.randbits(64):016x}"
        self._id_counter = itertools.count(1)

    def _new_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        exchange = Exchange(self.api, scope, send)
        headers = header_map(scope["headers"])
        exchange.request_id = client_request_id(headers) or self._new_request_id()
        exchange.traceparent = tracing.child(headers.get(tracing.HEADER.encode()))
        path, method = scope["path"], scope["method"]
        service = path[len(SERVICES_PREFIX):] if path.startswith(SERVICES_PREFIX) else None
        allowed = ROUTES.get(path if service is None else SERVICE_ROUTE)
        if allowed is None:
            await exchange.error(404, "not_found", f"no such endpoint {path}; try POST /v1/requests or GET /v1/health",
                                 close=has_large_body(headers))
        elif method not in allowed:
            await exchange.error(405, "method_not_allowed", f"{path} allows {', '.join(allowed)}", allow=allowed,
                                 close=has_large_body(headers))
        elif path == "/v1/requests":
            await self._post_request(exchange, headers, receive, None)
        elif service is not None:
            await self._post_service_request(exchange, headers, receive, service)
        elif path == "/v1/health":
            await self._health(exchange)
        else:
            await self._metrics(exchange)

    async def _post_service_request(self, exchange: Exchange, headers: dict[bytes, bytes], receive: Receive,
                                    service: str) -> None:
        """``POST /v1/services/<name>``: a name no service can have is unknown without asking the broker."""
        try:
            check_name(service)
        except ValueError as exc:
            await exchange.error(404, "unknown_service", str(exc), close=has_large_body(headers))
            return
        await self._post_request(exchange, headers, receive, None if service == DEFAULT_SERVICE else service)

    async def _post_request(self, exchange: Exchange, headers: dict[bytes, bytes], receive: Receive,
                            service: str | None) -> None:
        api = self.api
        if b"transfer-encoding" in headers:
            await exchange.error(411, "length_required", "chunked bodies are not supported; send Content-Length",
                                 close=True)
            return
        length_text = headers.get(b"content-length")
        if length_text is None:
            await exchange.error(411, "length_required", "Content-Length is required", close=True)
            return
        length = int(length_text)  # httptools refused anything but digits already
        if length > api.max_body:
            # Answered before any of the body is read; closing lingers, so a client still sending
            # it reads this answer rather than a reset (burrow.daemon.http.transport).
            await exchange.error(413, "too_large", f"request body of {length} bytes is over {api.max_body}", close=True)
            return
        body = await receive_body(exchange.scope, receive)
        if body is None:
            await exchange.error(
                408, "request_timeout", f"body not received within {api.read_timeout:g} s", close=True
            )
            return
        if len(body) != length:
            return  # the client went away before sending all of it
        try:
            timeout = request_timeout(headers)
            key = request_key(headers)
        except BadHeader as exc:
            await exchange.error(400, exc.code, str(exc), header=exc.header)
            return
        effective = timeout if timeout is not None else api.default_timeout
        if not api.producer.connected and not await self._broker_back(min(api.unavailable_wait, effective)):
            await exchange.error(503, "unavailable", "the broker is unreachable", retry_after=1)
            return
        try:
            reply = await self._submit(exchange, body, effective, service, key)
        except Exception as exc:  # every failure becomes a status code; unknown ones a logged 500
            await self._failed(exchange, exc)
            return
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "Request %s answered (%d bytes)", exchange.request_id, len(reply),
                extra={"REQUEST_ID": exchange.request_id, "CORRELATION_ID": exchange.correlation_id,
                       "TRACE_ID": tracing.trace_id({tracing.HEADER: exchange.traceparent})},
            )
        await exchange.respond(200, reply)

    async def _broker_back(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the producer's broker connection to come back.

        A planned failover (a drained or restarted broker) takes the producer a moment to reconnect
        to another node; a request arriving then waits for it instead of failing, and one arriving
        during a real outage is answered 503 once the wait is over.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + seconds
        while not self.api.producer.connected:
            if loop.time() >= give_up:
                return False
            await asyncio.sleep(CONNECTED_POLL)
        return True

    async def _submit(self, exchange: Exchange, body: bytes, timeout: float, service: str | None,
                      key: str | None) -> bytes:
        """Publish and await the reply; waits (without blocking the loop) while the producer is full."""
        loop = asyncio.get_running_loop()
        if self.bridge is None:
            self.bridge = FutureBridge(loop)
        give_up = loop.time() + timeout + RESULT_GRACE
        while True:
            try:
                future = self.api.producer.submit(
                    body, timeout=timeout, block=False, service=service, key=key,
                    headers={"x-burrow-request-id": exchange.request_id, tracing.HEADER: exchange.traceparent},
                )
                break
            except Backpressure:
                if loop.time() + BACKPRESSURE_PAUSE >= give_up:
                    raise
                await asyncio.sleep(BACKPRESSURE_PAUSE)
        exchange.correlation_id = str(getattr(future, "correlation_id", "") or "")
        try:
            return await self.bridge.wrap(future, give_up)
        except RequestTimeout:
            raise  # the producer's own, which says whether the broker had confirmed the request
        except TimeoutError:
            raise RequestTimeout(f"no reply within {timeout:g} s") from None

    async def _health(self, exchange: Exchange) -> None:
        api = self.api
        producer = api.producer
        connected = bool(producer.connected)
        document = {
            "broker_connected": connected,
            "in_flight": int(producer.in_flight),
            "reply_queue_type": producer.reply_queue_type,
            "draining": api.draining,
            "connections": api.connection_count,
            "uptime_seconds": round(time.monotonic() - api.started_at, 3),
            "request_id": exchange.request_id,
        }
        await exchange.json(200 if connected and not api.draining else 503, document)

    async def _metrics(self, exchange: Exchange) -> None:
        exposition = prometheus.exposition()
        if exposition is None:
            await exchange.error(404, "not_found", "metrics are disabled ([metrics] enabled = false)")
            return
        body, content_type = exposition
        await exchange.respond(200, body, content_type)

    async def _failed(self, exchange: Exchange, exc: BaseException) -> None:
        """Map a submit/result exception to its status code (see the module docstring)."""
        request_id = exchange.request_id
        log_extra = {"REQUEST_ID": request_id, "CORRELATION_ID": exchange.correlation_id,
                     "TRACE_ID": tracing.trace_id({tracing.HEADER: exchange.traceparent})}
        if isinstance(exc, RequestTimeout):
            logger.info("Request %s timed out: %s", request_id, exc, extra=log_extra)
            await exchange.error(504, "timeout", str(exc) or "no reply before the deadline", timed_out=exc)
        elif isinstance(exc, RemoteError):
            logger.info("Request %s failed remotely: %s", request_id, exc, extra=log_extra)
            await exchange.error(502, "remote_error", exc.message, remote_type=exc.type_name)
        elif isinstance(exc, Rejected):
            logger.info("Request %s was dead-lettered: %s", request_id, exc, extra=log_extra)
            await exchange.error(REJECTED_STATUS.get(exc.reason, 422), "rejected", exc.message, rejected=exc)
        elif isinstance(exc, Backpressure):
            await exchange.error(503, "busy", str(exc) or "too many requests in flight", retry_after=1)
        elif isinstance(exc, UnknownService):
            logger.info("Request %s is for an unknown service: %s", request_id, exc, extra=log_extra)
            await exchange.error(404, "unknown_service", str(exc))
        elif isinstance(exc, BrokerUnavailable):
            await exchange.error(503, "unavailable", str(exc) or "the broker is unreachable", retry_after=1)
        elif isinstance(exc, PublishError):
            logger.info("Request %s refused by the broker: %s", request_id, exc, extra=log_extra)
            await exchange.error(503, "refused", str(exc) or "the broker refused the request", retry_after=1)
        elif isinstance(exc, BurrowError):
            logger.warning("Request %s failed: %s", request_id, exc, extra=log_extra)
            await exchange.error(500, "internal", str(exc))
        else:
            logger.error("Request %s failed unexpectedly", request_id, exc_info=exc, extra=log_extra)
            await exchange.error(500, "internal", "unexpected error; see the producer's log")


__all__ = ["REJECTED_STATUS", "ROUTES", "ApiState", "App", "ProducerAPI"]
