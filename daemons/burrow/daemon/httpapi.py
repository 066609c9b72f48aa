"""The producer daemon's local HTTP/1.1 API on a Unix socket.

Local applications send a request and get the consumer's reply in the response::

    curl --unix-socket /run/burrow/producer.sock --data-binary @request.bin http://burrow/v1/requests
    curl --unix-socket /run/burrow/producer.sock http://burrow/v1/health

Endpoints:

- ``POST /v1/requests``: body = request body (``Content-Length`` required, at most
  ``producer.max_message_bytes``); optional ``X-Burrow-Timeout: <seconds>`` overrides
  ``producer.request_timeout``; optional ``X-Burrow-Request-Id`` (else one is made up). Answers
  ``200`` with the reply body, ``504`` when the deadline passed, ``502`` with the remote error when the
  handler raised, ``503`` while the broker is unreachable or the producer refuses work, ``413`` over
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

One thread per connection (socketserver's ThreadingMixIn), all sharing the one producer, whose
``submit`` is thread-safe. Connections are capped at ``max_connections``: beyond it the accept
loop waits briefly (clients queue in the kernel's backlog), then answers 503. Each request must
arrive completely (request line, headers, body) within ``read_timeout`` seconds, measured as a
deadline rather than per ``recv``, so a slow-loris client trickling one byte at a time is cut off.

Under systemd socket activation (``burrow-producer.socket``) the listening socket arrives as fd 3
(``LISTEN_FDS``/``LISTEN_PID``). Clients connecting while the producer restarts then wait in the
kernel's queue, and the next producer answers them.
"""

from __future__ import annotations

import concurrent.futures
import errno
import http.server
import io
import json
import logging
import math
import os
import re
import socket
import socketserver
import stat
import threading
import time
import types
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from burrow import tracing
from burrow.daemon import prometheus as metrics
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

DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_READ_TIMEOUT = 10.0
#: How long the accept loop waits for a free connection slot before answering 503.
SLOT_WAIT = 1.0
#: Largest ``X-Burrow-Timeout`` accepted (seconds).
MAX_TIMEOUT = 86400.0
#: Extra seconds to wait for a future beyond the request's own deadline before giving up with 504.
RESULT_GRACE = 5.0

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Path -> the methods it answers; other methods get 405 with an Allow header.
ROUTES: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {"/v1/requests": ("POST",), "/v1/health": ("GET",), "/metrics": ("GET",)}
)


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


class _DeadlineReader(io.RawIOBase):
    """Socket reads bounded by one absolute deadline for the whole request (anti slow-loris)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("request not received in time")
            self._sock.settimeout(remaining)
        return self._sock.recv_into(buffer)


class _Connection:
    """Drain bookkeeping for one client connection, registered as soon as it is accepted."""

    __slots__ = ("busy", "served", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.busy = True
        self.served = 0


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A threading Unix-socket server on an already listening socket, with a connection cap."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, api: HttpApi, sock: socket.socket) -> None:
        super().__init__(sock.getsockname(), _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.api = api

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.api._slots.acquire(timeout=SLOT_WAIT):
            self.api._refuse(request)
            self.shutdown_request(request)
            return
        self.api._track(request)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.api._untrack(request)
            self.api._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.api._untrack(request)
            self.api._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.exception("Unexpected error while serving a client of the HTTP API")


class _Handler(http.server.BaseHTTPRequestHandler):
    """Parses one connection's requests and maps producer outcomes to status codes."""

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"
    server_version = "burrow"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)
        self._request_id = ""
        self._correlation_id = ""
        self._traceparent = ""

    def handle_one_request(self) -> None:
        """Give the next request ``read_timeout`` seconds to arrive in full, then serve it."""
        api = self.server.api
        self._reader.deadline = time.monotonic() + api.read_timeout
        self._request_id = ""
        self._correlation_id = ""
        self._traceparent = ""
        try:
            super().handle_one_request()
        except TimeoutError:
            logger.debug("Client too slow to send its request; closing the connection")
            self.close_connection = True
        except (ConnectionResetError, BrokenPipeError):
            self.close_connection = True
        if api._idle(self.connection):
            self.close_connection = True

    def handle_expect_100(self) -> bool:
        """Refuse an oversized body before the client sends it (curl sends Expect above 1 KiB)."""
        length = self.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.server.api.max_body:
            self._error(413, "too_large", f"request body over {self.server.api.max_body} bytes", close=True)
            return False
        return super().handle_expect_100()

    # -- routing ---------------------------------------------------------------------------------

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        self.server.api._busy(self.connection)
        self._request_id = self._client_request_id() or uuid.uuid4().hex
        allowed = ROUTES.get(path)
        if allowed is None:
            self._discard_body()
            self._error(404, "not_found", f"no such endpoint {path}; try POST /v1/requests or GET /v1/health")
        elif method not in allowed:
            self._discard_body()
            self._error(405, "method_not_allowed", f"{path} allows {', '.join(allowed)}", allow=allowed)
        elif path == "/v1/requests":
            self._post_request()
        elif path == "/v1/health":
            self._health()
        else:
            self._metrics()

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_OPTIONS(self) -> None:
        self._route("OPTIONS")

    # -- endpoints -------------------------------------------------------------------------------

    def _post_request(self) -> None:
        api = self.server.api
        body = self._read_body()
        if body is None:
            return
        timeout = self._timeout_header()
        if timeout is False:
            return
        producer = api.producer
        if not producer.connected:
            self._error(503, "unavailable", "the broker is unreachable", retry_after=1)
            return
        effective = timeout if timeout is not None else api.default_timeout
        self._traceparent = tracing.child(self.headers.get(tracing.HEADER))
        try:
            future = producer.submit(
                body, timeout=effective, block=True,
                headers={"x-burrow-request-id": self._request_id, tracing.HEADER: self._traceparent},
            )
            self._correlation_id = str(getattr(future, "correlation_id", "") or "")
            reply = future.result(timeout=effective + RESULT_GRACE)
        except concurrent.futures.TimeoutError:
            self._failed(RequestTimeout(f"no reply within {effective:g} s"))
            return
        except Exception as exc:  # every failure becomes a status code; unknown ones a logged 500
            self._failed(exc)
            return
        logger.debug(
            "Request %s answered (%d bytes)", self._request_id, len(reply),
            extra={"REQUEST_ID": self._request_id, "CORRELATION_ID": self._correlation_id, "TRACE_ID": self._trace_id},
        )
        self._respond(200, reply, "application/octet-stream")

    def _health(self) -> None:
        api = self.server.api
        self._discard_body()
        producer = api.producer
        connected = bool(producer.connected)
        document = {
            "broker_connected": connected,
            "in_flight": int(producer.in_flight),
            "draining": api.draining,
            "connections": api.connection_count,
            "uptime_seconds": round(time.monotonic() - api.started_at, 3),
        }
        healthy = connected and not api.draining
        self._json(200 if healthy else 503, document)

    def _metrics(self) -> None:
        self._discard_body()
        exposition = metrics.exposition()
        if exposition is None:
            self._error(404, "not_found", "metrics are disabled ([metrics] enabled = false)")
            return
        body, content_type = exposition
        self._respond(200, body, content_type)

    # -- request parsing -------------------------------------------------------------------------

    @property
    def _trace_id(self) -> str | None:
        return tracing.trace_id({tracing.HEADER: self._traceparent})

    def _client_request_id(self) -> str | None:
        value = self.headers.get("X-Burrow-Request-Id", "")
        return value if _REQUEST_ID.match(value) else None

    def _read_body(self) -> bytes | None:
        """Read exactly Content-Length bytes; answer 411/400/413/408 and return None otherwise."""
        api = self.server.api
        if "Transfer-Encoding" in self.headers:
            self._error(411, "length_required", "chunked bodies are not supported; send Content-Length", close=True)
            return None
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self._error(411, "length_required", "Content-Length is required", close=True)
            return None
        if not length_text.strip().isdigit():
            self._error(400, "bad_request", f"bad Content-Length {length_text!r}", close=True)
            return None
        length = int(length_text)
        if length > api.max_body:
            self._error(413, "too_large", f"request body of {length} bytes is over {api.max_body}", close=True)
            return None
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self._error(408, "request_timeout", f"body not received within {api.read_timeout:g} s", close=True)
            return None
        if len(body) != length:
            self.close_connection = True
            return None
        return body

    def _discard_body(self) -> None:
        """Skip a small body so the connection stays usable; close it if the body is large."""
        length_text = self.headers.get("Content-Length", "0").strip()
        length = int(length_text) if length_text.isdigit() else 0
        if length > 65536 or "Transfer-Encoding" in self.headers:
            self.close_connection = True
            return
        if length:
            try:
                self.rfile.read(length)
            except TimeoutError:
                self.close_connection = True

    def _timeout_header(self) -> float | None | bool:
        """The X-Burrow-Timeout seconds, None when absent, False after answering 400."""
        value = self.headers.get("X-Burrow-Timeout")
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or not 0 < seconds <= MAX_TIMEOUT:
            self._error(
                400, "bad_timeout", f"X-Burrow-Timeout must be seconds in (0, {MAX_TIMEOUT:g}], got {value!r}"
            )
            return False
        return seconds

    # -- responses -------------------------------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        """Map a submit/result exception to its status code (see the module docstring)."""
        log_extra = {"REQUEST_ID": self._request_id, "CORRELATION_ID": self._correlation_id, "TRACE_ID": self._trace_id}
        if isinstance(exc, RequestTimeout):
            logger.info("Request %s timed out: %s", self._request_id, exc, extra=log_extra)
            self._error(504, "timeout", str(exc) or "no reply before the deadline")
        elif isinstance(exc, RemoteError):
            logger.info("Request %s failed remotely: %s", self._request_id, exc, extra=log_extra)
            self._error(502, "remote_error", exc.message, remote_type=exc.type_name)
        elif isinstance(exc, Rejected):
            logger.info("Request %s was dead-lettered: %s", self._request_id, exc, extra=log_extra)
            self._error(REJECTED_STATUS.get(exc.reason, 422), "rejected", exc.message, rejected=exc)
        elif isinstance(exc, Backpressure):
            self._error(503, "busy", str(exc) or "too many requests in flight", retry_after=1)
        elif isinstance(exc, BrokerUnavailable):
            self._error(503, "unavailable", str(exc) or "the broker is unreachable", retry_after=1)
        elif isinstance(exc, PublishError):
            logger.info("Request %s refused by the broker: %s", self._request_id, exc, extra=log_extra)
            self._error(503, "refused", str(exc) or "the broker refused the request", retry_after=1)
        elif isinstance(exc, BurrowError):
            logger.warning("Request %s failed: %s", self._request_id, exc, extra=log_extra)
            self._error(500, "internal", str(exc))
        else:
            logger.error("Request %s failed unexpectedly", self._request_id, exc_info=exc, extra=log_extra)
            self._error(500, "internal", "unexpected error; see the producer's log")

    def _error(
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
        document: dict[str, Any] = {"error": code, "message": message}
        headers: dict[str, str] = {}
        if rejected is not None:
            document["reason"] = rejected.reason
            headers["X-Burrow-Reject-Reason"] = rejected.reason
            if isinstance(rejected, DeliveryLimitExceeded):
                document["delivery_count"] = rejected.delivery_count
        if remote_type is not None:
            document["type"] = remote_type
            headers["X-Burrow-Error-Type"] = remote_type
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if allow is not None:
            headers["Allow"] = ", ".join(allow)
        self._json(status, document, headers=headers, close=close)

    def _json(
        self, status: int, document: dict[str, Any], *, headers: dict[str, str] | None = None, close: bool = False
    ) -> None:
        if self._request_id:
            document.setdefault("request_id", self._request_id)
        if self._correlation_id:
            document.setdefault("correlation_id", self._correlation_id)
        body = (json.dumps(document) + "\n").encode()
        self._respond(status, body, "application/json", headers=headers, close=close)

    def _respond(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        api = self.server.api
        self._reader.deadline = None
        self.connection.settimeout(api.read_timeout)
        if close or api.draining:
            self.close_connection = True
        self.send_response(status)
        metrics.http_answered(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self._request_id:
            self.send_header("X-Burrow-Request-Id", self._request_id)
        if self._correlation_id:
            self.send_header("X-Burrow-Correlation-Id", self._correlation_id)
        if self._traceparent:
            self.send_header("traceparent", self._traceparent)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            logger.debug("Client of request %s went away before its response", self._request_id)
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer http.server's own errors (malformed request line, huge headers) in JSON too."""
        short = self.responses.get(code, ("error",))[0]
        self._error(code, short.lower().replace(" ", "_"), explain or message or short, close=True)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("HTTP API: " + format, *args, extra={"REQUEST_ID": self._request_id})


class HttpApi:
    """The producer's HTTP API: owns the listening socket, the server thread and the drain.

    Lifecycle, driven by the producer daemon: :meth:`start` before ``READY=1`` (the socket listens
    from then on); on SIGTERM :meth:`stop_accepting`, :meth:`drain` while the producer still answers,
    then :meth:`close`. :meth:`reconfigure` applies a SIGHUP reload's timeouts and size limit.
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
    ) -> None:
        self.producer = producer
        self.socket_path = socket_path
        self.socket_mode = socket_mode
        self.max_body = max_body
        self.default_timeout = default_timeout
        self.read_timeout = read_timeout
        self.socket_activation = socket_activation
        self.max_connections = max_connections
        self.activated = False
        self.draining = False
        self.started_at = time.monotonic()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._connections: dict[socket.socket, _Connection] = {}
        self._changed = threading.Condition()
        self._server: _Server | None = None
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
        return self._server is not None

    @property
    def connection_count(self) -> int:
        """Open client connections right now."""
        with self._changed:
            return len(self._connections)

    def start(self) -> None:
        """Take systemd's socket or bind our own, and start serving in a background thread."""
        sock = inherited_socket() if self.socket_activation else None
        if sock is not None:
            self.activated = True
            path = sock.getsockname()
            if isinstance(path, str) and path:
                self._address = path
            if self._address != self.socket_path:
                logger.warning("Using systemd's socket %s, not producer.socket %s", self._address, self.socket_path)
        else:
            sock = bind_socket(self.socket_path, self.socket_mode)
            info = os.stat(self.socket_path)
            self._bound_inode = (info.st_dev, info.st_ino)
        self._server = _Server(self, sock)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="burrow-http", daemon=True
        )
        self._thread.start()
        logger.info(
            "HTTP API listening on %s (%s)", self.address, "socket activation" if self.activated else "own socket"
        )

    def reconfigure(
        self, *, default_timeout: float | None = None, max_body: int | None = None, read_timeout: float | None = None
    ) -> None:
        """Apply reloaded limits; requests already waiting keep the values they started with."""
        if default_timeout is not None:
            self.default_timeout = default_timeout
        if max_body is not None:
            self.max_body = max_body
        if read_timeout is not None:
            self.read_timeout = read_timeout

    def stop_accepting(self) -> None:
        """Stop the accept loop and let go of the listening socket.

        With socket activation systemd keeps its copy, so new clients wait in its queue for the
        next producer; our own socket is closed and unlinked, so new clients fail at once instead
        of hanging in a backlog nobody will read.
        """
        self.draining = True
        server = self._server
        if server is None:
            return
        if self._thread is not None and self._thread.is_alive():
            server.shutdown()
        self._release_listener()
        self._close_idle()

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for requests being served; True when none is left.

        Connections that have not sent their first request yet count as busy (their client is
        about to send one), idle keep-alive connections are closed so they do not hold the drain.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while any(c.busy for c in self._connections.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    busy = sum(1 for c in self._connections.values() if c.busy)
                    logger.warning("%d HTTP requests still running after %.1f s of drain", busy, timeout)
                    return False
                self._changed.wait(remaining)
        self._close_idle()
        return True

    def close(self) -> None:
        """Stop serving, cut every remaining connection and release the socket (unlink ours)."""
        if self._server is None:
            return
        self.stop_accepting()
        with self._changed:
            remaining = list(self._connections)
        for sock in remaining:
            _shutdown(sock)
        self._server = None

    def _release_listener(self) -> None:
        server = self._server
        if server is None or server.socket.fileno() < 0:
            return
        server.server_close()
        if self._bound_inode is not None:
            try:
                info = os.stat(self.socket_path)
                if (info.st_dev, info.st_ino) == self._bound_inode:
                    os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
            self._bound_inode = None

    # -- called by handler threads ---------------------------------------------------------------

    def _track(self, sock: socket.socket) -> None:
        with self._changed:
            self._connections[sock] = _Connection(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._changed:
            self._connections.pop(sock, None)
            self._changed.notify_all()

    def _busy(self, sock: socket.socket) -> None:
        with self._changed:
            connection = self._connections.get(sock)
            if connection is not None:
                connection.busy = True

    def _idle(self, sock: socket.socket) -> bool:
        """A request was answered; True when the connection should close because we drain."""
        with self._changed:
            connection = self._connections.get(sock)
            if connection is not None:
                connection.served += 1
                connection.busy = False
            self._changed.notify_all()
            return self.draining

    def _close_idle(self) -> None:
        with self._changed:
            idle = [c.sock for c in self._connections.values() if not c.busy and c.served]
        for sock in idle:
            _shutdown(sock)

    def _refuse(self, request: socket.socket) -> None:
        """Answer 503 on a connection over ``max_connections`` without giving it a thread."""
        body = json.dumps({"error": "busy", "message": f"over {self.max_connections} connections"}).encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        ).encode()
        logger.warning("Refusing a client: %d connections open", self.max_connections)
        try:
            request.settimeout(1.0)
            request.sendall(head + body)
        except OSError:
            pass


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_READ_TIMEOUT",
    "HttpApi",
    "ProducerAPI",
    "bind_socket",
    "inherited_socket",
]
