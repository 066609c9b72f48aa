"""The producer daemon's local HTTP/1.1 API on a Unix socket, served by uvicorn on uvloop.

Local applications send a request and get the consumer's reply in the response::

    curl --unix-socket /run/burrow/producer.sock --data-binary @request.bin http://burrow/v1/requests
    curl --unix-socket /run/burrow/producer.sock http://burrow/v1/health

Endpoints:

- ``POST /v1/requests``: body = request body (``Content-Length`` required, at most
  ``producer.max_message_bytes``); optional ``X-Burrow-Timeout: <seconds>`` overrides
  ``producer.request_timeout``; optional ``X-Burrow-Request-Id`` (else one is made up). Answers
  ``200`` with the reply body, ``504`` when the deadline passed, ``502`` with the remote error when the
  handler raised, ``503`` while the broker is unreachable (after waiting up to
  ``producer.unavailable_wait`` for the connection to come back) or the producer refuses work, ``413`` over
  the size limit, ``411`` without ``Content-Length``, ``400`` for a bad ``X-Burrow-Timeout``. A
  request burrow dead-lettered is answered as soon as the caller is told, with
  :data:`REJECTED_STATUS` of its reason (413 too large, 415 content type, 422 invalid UTF-8, 504
  stale, 502 past the delivery limit) and ``X-Burrow-Reject-Reason``.
  Every answer carries ``X-Burrow-Request-Id`` and, once published, ``X-Burrow-Correlation-Id``.
  A W3C ``traceparent`` header continues the client's trace (else a new one starts): it goes with
  the request to the consumer and comes back on the answer, and both daemons log its ``TRACE_ID``.
  Error bodies are JSON: ``{"error": "...", "message": "...", ...}``.
- ``GET /v1/health``: ``{"broker_connected": ..., "in_flight": ..., ...}``, 200 when connected, else 503.
- ``GET /metrics``: Prometheus text when metrics are enabled, else 404.

How it is served: one thread runs an asyncio event loop (uvloop) with uvicorn's httptools protocol
(HTTP/1.1 parsing by httptools/llhttp, keep-alive, pipelining, flow control, ``100 Continue``) and
a small ASGI application, :class:`_App`, that calls ``Producer.submit`` and awaits the reply through
:class:`burrow.daemon.bridge.FutureBridge`: no thread per connection or per request. uvicorn's
protocol is subclassed (:class:`_Protocol`) only for what uvicorn does not do and this API
promises: JSON answers for unparsable requests (400, 431, 501), a cap on the request head's size,
a connection cap (beyond ``max_connections`` a client waits up to :data:`SLOT_WAIT` for a slot,
then gets 503), the whole-request read deadline (request line, headers and body must arrive within
``read_timeout`` seconds of the first byte, so a slow-loris client trickling one byte at a time is
cut off; an idle connection is closed after ``read_timeout`` too), and the drain bookkeeping.
Every answer's status is decided in one place, :func:`_answer`.

Under systemd socket activation (``burrow-producer.socket``) the listening socket arrives as fd 3
(``LISTEN_FDS``/``LISTEN_PID``). Clients connecting while the producer restarts then wait in the
kernel's queue, and the next producer answers them.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import errno
import http
import itertools
import json
import logging
import math
import os
import re
import socket
import stat
import threading
import time
import types
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import httptools
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from burrow import tracing
from burrow.daemon import prometheus as metrics
from burrow.daemon.bridge import FutureBridge
from burrow.errors import (
    Backpressure,
    BrokerUnavailable,
    BurrowError,
    DeliveryLimitExceeded,
    PublishError,
    Rejected,
    RemoteError,
    RequestTimeout,
)
from burrow.protocol import (
    REJECT_CONTENT_TYPE,
    REJECT_DELIVERY_LIMIT,
    REJECT_INVALID_UTF8,
    REJECT_STALE,
    REJECT_TOO_LARGE,
)

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

#: First file descriptor systemd passes (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3

#: Connections are cheap on the event loop (a few KiB each, no thread): the cap leaves room above
#: the benchmark's 256 keep-alive connections while staying well under the 1024 descriptors of a
#: systemd service's default soft ``LimitNOFILE``.
DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_READ_TIMEOUT = 10.0
#: How long a connection over ``max_connections`` waits for a free slot before it is answered 503.
SLOT_WAIT = 1.0
#: How often a request waiting for the broker connection (``producer.unavailable_wait``) looks again.
CONNECTED_POLL = 0.05
#: Largest ``X-Burrow-Timeout`` accepted (seconds).
MAX_TIMEOUT = 86400.0
#: Extra seconds to wait for a future beyond the request's own deadline before giving up with 504.
RESULT_GRACE = 5.0
#: Largest request line plus headers (bytes); a longer head is answered 431.
MAX_HEAD_BYTES = 65536
#: A body at most this much over the size limit is read (and dropped) before the 413 answer.
DISCARD_LIMIT = 65536
#: Pause between two ``submit`` attempts while the producer has ``max_in_flight`` requests out.
BACKPRESSURE_PAUSE = 0.005
#: Listen backlog (asyncio calls ``listen()`` again on the socket it serves, systemd's too).
BACKLOG = 1024

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: A request line that is well formed apart from its method (then 501, else 400).
_REQUEST_LINE = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+ \S+ HTTP/1\.[01]\r?\n")
#: Path -> the methods it answers; other methods get 405 with an Allow header.
ROUTES: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {"/v1/requests": ("POST",), "/v1/health": ("GET",), "/metrics": ("GET",)}
)

Headers = list[tuple[bytes, bytes]]


class ProducerAPI(Protocol):
    """What the HTTP API needs from the producer (``burrow.producer.Producer`` provides it)."""

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
    ) -> concurrent.futures.Future[bytes]:
        """Publish ``body``; the future has ``correlation_id`` and resolves to the reply body."""


def inherited_socket(environ: Mapping[str, str] | None = None) -> socket.socket | None:
    """Return the listening socket systemd passed us (socket activation), or ``None``.

    Follows ``sd_listen_fds(unset_environment=1)``: the fds are ours only when ``LISTEN_PID`` is
    this process, and the variables are removed from ``os.environ`` so child processes (a handler's
    subprocess) do not mistake fd 3 for theirs. Raises ``ValueError`` if fd 3 is not a listening
    Unix stream socket, which means the .socket unit was edited wrongly.
    """
    env = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID", ""), env.get("LISTEN_FDS", "")
    if environ is None:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    if not pid or not count or pid != str(os.getpid()):
        return None
    try:
        fds = int(count)
    except ValueError:
        logger.warning("Ignoring LISTEN_FDS=%r: not a number", count)
        return None
    if fds < 1:
        return None
    if fds > 1:
        logger.warning("systemd passed %d sockets; using the first (fd %d)", fds, LISTEN_FDS_START)
    sock = socket.socket(fileno=LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ValueError(f"fd {LISTEN_FDS_START} from systemd is not a Unix stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ValueError(f"fd {LISTEN_FDS_START} from systemd is not listening")
    sock.set_inheritable(False)
    return sock


def bind_socket(path: str, mode: int, backlog: int = 128) -> socket.socket:
    """Create, bind and listen on a Unix socket at ``path`` with permissions ``mode``.

    A leftover socket file from a crashed producer is replaced, but one that still answers is not:
    two producers on one path would steal each other's clients. The file is created under a umask
    that leaves only the owner any access, then widened to ``mode``, so no client can connect
    while it is more open than configured.
    """
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if not stat.S_ISSOCK(existing.st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(path)
            else:
                raise OSError(errno.EADDRINUSE, f"another process is listening on {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        previous = os.umask(0o077)
        try:
            sock.bind(path)
        finally:
            os.umask(previous)
        os.chmod(path, mode)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _answer(
    status: int,
    body: bytes,
    content_type: str,
    *,
    request_id: str = "",
    correlation_id: str = "",
    close: bool = False,
    extra: Mapping[str, str] | None = None,
) -> Headers:
    """The response headers of one answer: every answer of the API, whatever layer sends it.

    The single place where an answer's status is final, so per-status accounting goes here.
    """
    metrics.http_answered(status)
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


def _error_document(
    code: str, message: str, request_id: str = "", correlation_id: str = "", fields: Mapping[str, Any] | None = None
) -> bytes:
    document: dict[str, Any] = {"error": code, "message": message, **(fields or {})}
    if request_id:
        document["request_id"] = request_id
    if correlation_id:
        document["correlation_id"] = correlation_id
    return (json.dumps(document) + "\n").encode()


def _raw_error(status: int, code: str, message: str, extra: Mapping[str, str] | None = None) -> bytes:
    """A complete ``Connection: close`` JSON error response, for answers written by the protocol."""
    body = _error_document(code, message)
    headers = _answer(status, body, "application/json", close=True, extra=extra)
    return STATUS_LINE[status] + b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n" + body


def _status_code(status: int) -> str:
    """``request_header_fields_too_large`` for 431: the error code of a protocol-level answer."""
    return http.HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")


class _Reject(Exception):
    """Raised from a parser callback: answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the connection cap, the read deadline and JSON errors."""

    def __init__(self, api: HttpApi, config: uvicorn.Config, state: ServerState, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(config, state, {}, loop)
        self.api = api
        self.timeout_keep_alive = api.read_timeout
        self.admitted = False
        self.served = 0
        self.in_head = False
        self.head_bytes = 0
        self.deadline = 0.0
        self._deadline_handle: asyncio.TimerHandle | None = None
        self._slot_handle: asyncio.TimerHandle | None = None

    # -- connection cap ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.transport = _CorkedTransport(transport, self.loop)  # type: ignore[assignment]
        if len(self.connections) < self.api.max_connections:
            self.admit()
            return
        transport.pause_reading()  # type: ignore[attr-defined]
        self.api._waiting.append(self)
        self._slot_handle = self.loop.call_later(SLOT_WAIT, self.refuse)

    def admit(self) -> None:
        """Take a connection slot: serve this client from now on (idle for at most read_timeout)."""
        if self._slot_handle is not None:
            self._slot_handle.cancel()
            self._slot_handle = None
        self.admitted = True
        super().connection_made(self.transport)
        self.transport.resume_reading()
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def refuse(self) -> None:
        """No slot came free within SLOT_WAIT: answer 503 without reading the request."""
        self._slot_handle = None
        self.api._waiting.remove(self)
        logger.warning("Refusing a client: %d connections open", self.api.max_connections)
        self.transport.write(
            _raw_error(503, "busy", f"over {self.api.max_connections} connections", extra={"Retry-After": "1"})
        )
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        if not self.admitted:
            if self._slot_handle is not None:
                self._slot_handle.cancel()
                self.api._waiting.remove(self)
            return
        super().connection_lost(exc)
        self.api._connection_closed()

    # -- parsing, the head's size and deadline -------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self.in_head or self.cycle is None or self.cycle.response_complete or not self.cycle.more_body:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Reject):
                raise
            self.reject(exc.__context__.status, exc.__context__.message)
            return
        except httptools.HttpParserInvalidMethodError:
            well_formed = _REQUEST_LINE.match(data) is not None
            self.reject(501 if well_formed else 400, "unsupported method" if well_formed else "malformed request line")
            return
        except httptools.HttpParserError as exc:
            self.reject(400, f"malformed request: {exc}")
            return
        if self.in_head:
            if self.head_bytes > MAX_HEAD_BYTES:
                self.reject(431, f"request line and headers over {MAX_HEAD_BYTES} bytes")
            elif self._deadline_handle is None:
                # Only a head split over several reads needs the timer: most arrive in one.
                self._deadline_handle = self.loop.call_at(self.deadline, self._too_slow)

    def reject(self, status: int, message: str) -> None:
        """Answer a request the parser refused in JSON, then close (nothing after it can be trusted)."""
        logger.debug("Rejecting a request: %d %s", status, message)
        self._cancel_deadline()
        if not self.transport.is_closing():
            self.transport.write(_raw_error(status, _status_code(status), message))
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.deadline = self.loop.time() + self.api.read_timeout
        self.scope["extensions"] = {"burrow": {"deadline": self.deadline, "complete": False}}

    def on_message_complete(self) -> None:
        self.scope["extensions"]["burrow"]["complete"] = True
        super().on_message_complete()

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        # A head that arrived in one read was not measured by data_received: measure it here.
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > MAX_HEAD_BYTES:
            raise _Reject(431, f"request line and headers over {MAX_HEAD_BYTES} bytes")
        self._cancel_deadline()
        version = self.parser.get_http_version()
        if version not in ("1.0", "1.1"):
            raise _Reject(400, f"HTTP/{version} is not supported")
        self.api._busy_changed()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self.served += 1
        super().on_response_complete()
        self.api._busy_changed()

    def _too_slow(self) -> None:
        """The request's head did not arrive within read_timeout: close without an answer."""
        self._deadline_handle = None
        if self.in_head:
            logger.debug("Client too slow to send its request; closing the connection")
            self.transport.close()

    def _cancel_deadline(self) -> None:
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
            self._deadline_handle = None

    # -- drain ---------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Serving a request, or not having sent its first one yet (its client is about to)."""
        if self.cycle is None:
            return self.served == 0
        return not self.cycle.response_complete or bool(self.pipeline) or self.in_head

    def close_if_idle(self) -> None:
        """Drain: close a keep-alive connection between two requests (busy ones close after theirs)."""
        if not self.busy:
            self.transport.close()


class _Exchange:
    """One request on ``POST``/``GET``: its ids, and the answer sent through :func:`_answer`."""

    __slots__ = ("api", "correlation_id", "request_id", "scope", "send", "traceparent")

    def __init__(self, api: HttpApi, scope: dict[str, Any], send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self.api = api
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
        headers = _answer(
            status, body, content_type, request_id=self.request_id, correlation_id=self.correlation_id,
            close=close or self.api.draining, extra=extra,
        )
        if self.traceparent:
            headers.append((b"traceparent", self.traceparent.encode()))
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
    ) -> None:
        extra: dict[str, str] = {}
        fields: dict[str, Any] = {}
        if rejected is not None:
            fields["reason"] = rejected.reason
            extra["X-Burrow-Reject-Reason"] = rejected.reason
            if isinstance(rejected, DeliveryLimitExceeded):
                fields["delivery_count"] = rejected.delivery_count
        if remote_type is not None:
            fields["type"] = remote_type
            extra["X-Burrow-Error-Type"] = remote_type
        body = _error_document(code, message, self.request_id, self.correlation_id, fields)
        if retry_after is not None:
            extra["Retry-After"] = str(retry_after)
        if allow is not None:
            extra["Allow"] = ", ".join(allow)
        await self.respond(status, body, "application/json", close=close, extra=extra)

    async def json(self, status: int, document: dict[str, Any]) -> None:
        await self.respond(status, (json.dumps(document) + "\n").encode(), "application/json")


class _App:
    """The ASGI application: routing, the three endpoints and the mapping of failures to statuses."""

    def __init__(self, api: HttpApi) -> None:
        self.api = api
        self.bridge: FutureBridge | None = None
        # Made-up request ids: 32 hex digits, a random 64-bit prefix per process and a counter
        # (unique across restarts without a uuid4() system call per request).
        self._id_prefix = f"{secrets.randbits(64):016x}"
        self._id_counter = itertools.count(1)

    def _new_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        exchange = _Exchange(self.api, scope, send)
        headers = _header_map(scope["headers"])
        exchange.request_id = _client_request_id(headers) or self._new_request_id()
        exchange.traceparent = tracing.child(headers.get(tracing.HEADER.encode()))
        path, method = scope["path"], scope["method"]
        allowed = ROUTES.get(path)
        if allowed is None:
            await exchange.error(404, "not_found", f"no such endpoint {path}; try POST /v1/requests or GET /v1/health",
                                 close=_has_large_body(headers))
        elif method not in allowed:
            await exchange.error(405, "method_not_allowed", f"{path} allows {', '.join(allowed)}", allow=allowed,
                                 close=_has_large_body(headers))
        elif path == "/v1/requests":
            await self._post_request(exchange, headers, receive)
        elif path == "/v1/health":
            await self._health(exchange)
        else:
            await self._metrics(exchange)

    async def _post_request(self, exchange: _Exchange, headers: dict[bytes, bytes],
                            receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
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
            if b"expect" not in headers and length <= api.max_body + DISCARD_LIMIT:
                # Read the body first: closing on a client still sending it would reset the
                # connection, and the client would see the reset instead of this answer.
                await _receive_body(exchange.scope, receive)
            await exchange.error(413, "too_large", f"request body of {length} bytes is over {api.max_body}", close=True)
            return
        body = await _receive_body(exchange.scope, receive)
        if body is None:
            await exchange.error(
                408, "request_timeout", f"body not received within {api.read_timeout:g} s", close=True
            )
            return
        if len(body) != length:
            return  # the client went away before sending all of it
        timeout = await self._timeout_header(exchange, headers)
        if timeout is False:
            return
        effective = timeout if timeout is not None else api.default_timeout
        if not api.producer.connected and not await self._broker_back(min(api.unavailable_wait, effective)):
            await exchange.error(503, "unavailable", "the broker is unreachable", retry_after=1)
            return
        try:
            reply = await self._submit(exchange, body, effective)
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

    async def _submit(self, exchange: _Exchange, body: bytes, timeout: float) -> bytes:
        """Publish and await the reply; waits (without blocking the loop) while the producer is full."""
        loop = asyncio.get_running_loop()
        if self.bridge is None:
            self.bridge = FutureBridge(loop)
        give_up = loop.time() + timeout + RESULT_GRACE
        while True:
            try:
                future = self.api.producer.submit(
                    body, timeout=timeout, block=False,
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
        except TimeoutError:
            raise RequestTimeout(f"no reply within {timeout:g} s") from None

    async def _timeout_header(self, exchange: _Exchange, headers: dict[bytes, bytes]) -> float | None | bool:
        """The X-Burrow-Timeout seconds, None when absent, False after answering 400."""
        raw_value = headers.get(b"x-burrow-timeout")
        if raw_value is None:
            return None
        value = raw_value.decode("latin-1")
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or not 0 < seconds <= MAX_TIMEOUT:
            await exchange.error(
                400, "bad_timeout", f"X-Burrow-Timeout must be seconds in (0, {MAX_TIMEOUT:g}], got {value!r}"
            )
            return False
        return seconds

    async def _health(self, exchange: _Exchange) -> None:
        api = self.api
        producer = api.producer
        connected = bool(producer.connected)
        document = {
            "broker_connected": connected,
            "in_flight": int(producer.in_flight),
            "draining": api.draining,
            "connections": api.connection_count,
            "uptime_seconds": round(time.monotonic() - api.started_at, 3),
            "request_id": exchange.request_id,
        }
        await exchange.json(200 if connected and not api.draining else 503, document)

    async def _metrics(self, exchange: _Exchange) -> None:
        exposition = metrics.exposition()
        if exposition is None:
            await exchange.error(404, "not_found", "metrics are disabled ([metrics] enabled = false)")
            return
        body, content_type = exposition
        await exchange.respond(200, body, content_type)

    async def _failed(self, exchange: _Exchange, exc: BaseException) -> None:
        """Map a submit/result exception to its status code (see the module docstring)."""
        request_id = exchange.request_id
        log_extra = {"REQUEST_ID": request_id, "CORRELATION_ID": exchange.correlation_id,
                     "TRACE_ID": tracing.trace_id({tracing.HEADER: exchange.traceparent})}
        if isinstance(exc, RequestTimeout):
            logger.info("Request %s timed out: %s", request_id, exc, extra=log_extra)
            await exchange.error(504, "timeout", str(exc) or "no reply before the deadline")
        elif isinstance(exc, RemoteError):
            logger.info("Request %s failed remotely: %s", request_id, exc, extra=log_extra)
            await exchange.error(502, "remote_error", exc.message, remote_type=exc.type_name)
        elif isinstance(exc, Rejected):
            logger.info("Request %s was dead-lettered: %s", request_id, exc, extra=log_extra)
            await exchange.error(REJECTED_STATUS.get(exc.reason, 422), "rejected", exc.message, rejected=exc)
        elif isinstance(exc, Backpressure):
            await exchange.error(503, "busy", str(exc) or "too many requests in flight", retry_after=1)
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


async def _receive_body(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes | None:
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


class _CorkedTransport:
    """A connection's transport whose writes within one loop iteration leave in one ``write``.

    uvicorn writes a response's head and body separately; corked, they cost one system call (and,
    for pipelined requests, several responses share one). ``close`` sends what is pending first.
    Everything else is the transport's own.
    """

    def __init__(self, transport: asyncio.BaseTransport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending = []
            if not self._transport.is_closing():
                self._transport.write(data)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _header_map(raw: Headers) -> dict[bytes, bytes]:
    """Lower-case header names (uvicorn lowers them) -> value; a repeated header keeps its first value."""
    headers: dict[bytes, bytes] = {}
    for name, value in raw:
        headers.setdefault(name, value)
    return headers


def _client_request_id(headers: dict[bytes, bytes]) -> str | None:
    value = headers.get(b"x-burrow-request-id", b"").decode("latin-1")
    return value if _REQUEST_ID.match(value) else None


def _has_large_body(headers: dict[bytes, bytes]) -> bool:
    """A body not worth reading past on a request we refuse: close the connection after the answer."""
    length = headers.get(b"content-length", b"0")
    return b"transfer-encoding" in headers or int(length) > DISCARD_LIMIT


class HttpApi:
    """The producer's HTTP API: owns the listening socket, the event loop thread and the drain.

    Lifecycle, driven by the producer daemon: :meth:`start` before ``READY=1`` (the socket listens
    from then on); on SIGTERM :meth:`stop_accepting`, :meth:`drain` while the producer still answers,
    then :meth:`close`. :meth:`reconfigure` applies a SIGHUP reload's timeouts and size limit.
    Those methods are called from other threads; they hand their work to the loop.
    """

    def __init__(
        self,
        producer: ProducerAPI,
        *,
        socket_path: str,
        socket_mode: int = 0o660,
        max_body: int = 1048576,
        default_timeout: float = 30.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        socket_activation: bool = True,
        unavailable_wait: float = 5.0,
    ) -> None:
        self.producer = producer
        self.socket_path = socket_path
        self.socket_mode = socket_mode
        self.max_body = max_body
        self.default_timeout = default_timeout
        self.read_timeout = read_timeout
        self.unavailable_wait = unavailable_wait
        self.socket_activation = socket_activation
        self.max_connections = max_connections
        self.activated = False
        self.draining = False
        self.started_at = time.monotonic()
        self._state = ServerState()
        self._waiting: collections.deque[_Protocol] = collections.deque()
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._bound_inode: tuple[int, int] | None = None
        self._address = socket_path

    @property
    def address(self) -> str:
        """The path clients connect to (from systemd's socket when activated)."""
        return self._address

    @property
    def started(self) -> bool:
        """True once :meth:`start` has run (and until :meth:`close`)."""
        return self._loop is not None

    @property
    def connection_count(self) -> int:
        """Open client connections holding a slot right now."""
        return len(self._state.connections)

    def start(self) -> None:
        """Take systemd's socket or bind our own, and start serving on a loop in a background thread."""
        sock = inherited_socket() if self.socket_activation else None
        if sock is not None:
            self.activated = True
            path = sock.getsockname()
            if isinstance(path, str) and path:
                self._address = path
            if self._address != self.socket_path:
                logger.warning("Using systemd's socket %s, not producer.socket %s", self._address, self.socket_path)
        else:
            sock = bind_socket(self.socket_path, self.socket_mode, BACKLOG)
            info = os.stat(self.socket_path)
            self._bound_inode = (info.st_dev, info.st_ino)
        loop = uvloop.new_event_loop()
        config = uvicorn.Config(
            _App(self), http="httptools", ws="none", loop="none", lifespan="off", log_config=None,
            access_log=False, proxy_headers=False, server_header=False, date_header=False,
        )
        config.load()
        try:
            self._server = loop.run_until_complete(
                loop.create_unix_server(lambda: _Protocol(self, config, self._state, loop), sock=sock, backlog=BACKLOG)
            )
        except BaseException:
            loop.close()
            sock.close()
            raise
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="burrow-http", daemon=True)
        self._thread.start()
        logger.info(
            "HTTP API listening on %s (%s)", self.address, "socket activation" if self.activated else "own socket"
        )

    def reconfigure(
        self,
        *,
        default_timeout: float | None = None,
        max_body: int | None = None,
        read_timeout: float | None = None,
        unavailable_wait: float | None = None,
    ) -> None:
        """Apply reloaded limits; requests already waiting keep the values they started with."""
        if default_timeout is not None:
            self.default_timeout = default_timeout
        if unavailable_wait is not None:
            self.unavailable_wait = unavailable_wait
        if max_body is not None:
            self.max_body = max_body
        if read_timeout is not None:
            self.read_timeout = read_timeout

    def stop_accepting(self) -> None:
        """Stop accepting, let go of the listening socket and close idle keep-alive connections.

        With socket activation systemd keeps its copy, so new clients wait in its queue for the
        next producer; our own socket is closed and unlinked, so new clients fail at once instead
        of hanging in a backlog nobody will read. From now on every answer says ``Connection: close``.
        """
        self.draining = True
        if self._loop is None:
            return
        self._call(self._stop_accepting)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for requests being served; True when none is left.

        Connections that have not sent their first request yet count as busy (their client is
        about to send one); idle keep-alive connections are closed so they do not hold the drain.
        """
        if self._loop is None:
            return True
        future = asyncio.run_coroutine_threadsafe(self._wait_idle(timeout), self._loop)
        return future.result(timeout + 5)

    def close(self) -> None:
        """Stop serving, cut every remaining connection, release the socket and stop the loop."""
        loop = self._loop
        if loop is None:
            return
        self.stop_accepting()
        asyncio.run_coroutine_threadsafe(self._abort_all(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = None
        self._thread = None

    # -- on the loop ---------------------------------------------------------------------------

    def _call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop and wait for it (from another thread)."""
        assert self._loop is not None

        async def run() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def _stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._bound_inode is not None:
            try:
                info = os.stat(self.socket_path)
                if (info.st_dev, info.st_ino) == self._bound_inode:
                    os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
            self._bound_inode = None
        for connection in list(self._state.connections):
            connection.close_if_idle()  # type: ignore[attr-defined]

    async def _wait_idle(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            busy = [c for c in self._state.connections if c.busy]  # type: ignore[attr-defined]
            if not busy:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                logger.warning("%d HTTP requests still running after %.1f s of drain", len(busy), timeout)
                return False
            changed = loop.create_future()
            self._idle_waiters.append(changed)
            try:
                await asyncio.wait_for(changed, remaining)
            except asyncio.TimeoutError:
                pass

    async def _abort_all(self) -> None:
        """Cut every connection and end the requests still running (their clients get nothing)."""
        for connection in list(self._state.connections) + list(self._waiting):
            connection.transport.abort()  # type: ignore[attr-defined]
        tasks = list(self._state.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _busy_changed(self) -> None:
        """A request started or finished: wake :meth:`drain`; when draining, close idle connections."""
        if not self.draining and not self._idle_waiters:
            return
        if self.draining:
            for connection in list(self._state.connections):
                connection.close_if_idle()  # type: ignore[attr-defined]
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _connection_closed(self) -> None:
        """A slot came free: give it to the longest-waiting client, if any."""
        while self._waiting and len(self._state.connections) < self.max_connections:
            waiting = self._waiting.popleft()
            if not waiting.transport.is_closing():
                waiting.admit()
        self._busy_changed()


__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_READ_TIMEOUT",
    "HttpApi",
    "ProducerAPI",
    "bind_socket",
    "inherited_socket",
]
