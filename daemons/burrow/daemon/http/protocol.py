"""One client connection: uvicorn's httptools protocol plus what this API promises on top of it.

uvicorn parses HTTP/1.1 (httptools/llhttp), keeps connections alive, queues pipelined requests,
does flow control and ``100 Continue``, and runs the ASGI application once per request.
:class:`BurrowProtocol` adds, before the application sees anything:

- JSON answers for requests the parser refuses (400, 501) and for the head's limits: a request
  target over :data:`MAX_REQUEST_TARGET` bytes is answered 414, more than :data:`MAX_HEADERS`
  header lines or :data:`MAX_HEADER_BYTES` of them 431. A head that arrives in one read (the usual
  case) is measured once it is complete; one arriving in pieces is measured after each piece,
  so a flood is refused before it is all buffered.
- At most :data:`MAX_PIPELINED` requests queued behind the one running: the next is answered 503
  in its turn, and the connection closes after it.
- Answers always in request order: a refusal found while earlier requests of the connection are
  still running waits for their answers.
- The connection cap: beyond ``max_connections`` a client waits up to :data:`SLOT_WAIT` for a
  slot, then gets 503.
- The whole-request read deadline: request line, headers and body within ``read_timeout`` of the
  first byte, so a slow-loris client trickling one byte at a time is cut off (a slow body is
  answered 408 by the application); an idle connection is closed after ``read_timeout`` too.
- The bookkeeping the drain needs. Writes and the lingering close are the transport's
  (:mod:`burrow.daemon.http.transport`).

uvicorn's protocol classes are not public API: a subclass relies on their insides. Tested with
uvicorn 0.54 (``pyproject.toml`` pins the range); ``tests/unit/test_uvicorn_internals.py`` names
the first of these that an installed uvicorn lacks, so an upgrade that changes them fails there
and not in production:

- the module ``uvicorn.protocols.http.httptools_impl`` with ``HttpToolsProtocol`` (constructor
  ``(config, server_state, app_state, _loop)``) and ``STATUS_LINE`` (status -> status line bytes),
  and ``uvicorn.server.ServerState`` with ``connections`` and ``tasks``;
- the protocol's methods ``connection_made``, ``connection_lost``, ``data_received``,
  ``on_message_begin``, ``on_headers_complete``, ``on_message_complete``,
  ``on_response_complete``, ``timeout_keep_alive_handler`` and ``_unset_keepalive_if_required``;
- its attributes ``loop``, ``transport``, ``connections``, ``parser``, ``cycle`` (with
  ``response_complete`` and ``more_body``), ``pipeline``, ``scope``, ``url``, ``headers``,
  ``timeout_keep_alive`` and ``timeout_keep_alive_task``;
- for :func:`write_whole`, the cycle's ``scope``, ``transport``, ``flow`` (``write_paused``),
  ``disconnected``, ``keep_alive``, ``response_started``, ``waiting_for_100_continue``,
  ``response_complete``, ``message_event`` and ``on_response``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from typing import Protocol

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from burrow.daemon.http.answers import Headers, raw_error
from burrow.daemon.http.transport import CorkedTransport

logger = logging.getLogger(__name__)

#: How long a connection over ``max_connections`` waits for a free slot before it is answered 503.
SLOT_WAIT = 1.0
#: Longest request target (path and query) in bytes; a longer one is answered 414.
MAX_REQUEST_TARGET = 8192
#: Most header lines in a request; more are answered 431.
MAX_HEADERS = 100
#: Most bytes of header lines in a request (names, values, ``": "`` and line ends); more: 431.
MAX_HEADER_BYTES = 16384
#: Largest head (request line and headers) buffered while it arrives in pieces; a head that grows
#: past it without tripping one of the limits above is answered 431 all the same.
MAX_HEAD_BYTES = MAX_REQUEST_TARGET + MAX_HEADER_BYTES + 1024
#: Requests a connection may have queued behind the one running; the next is answered 503.
MAX_PIPELINED = 32

#: The headers the parser itself reads; its error messages name them ("Content-Length overflow").
_FRAMING_HEADERS = ("Content-Length", "Transfer-Encoding")
#: A request line that is well formed apart from its method (then 501, else 400).
_REQUEST_LINE = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+ \S+ HTTP/1\.[01]\r?\n")


class ConnectionHost(Protocol):
    """What a connection needs from the server that owns it (``HttpApi`` provides it)."""

    @property
    def read_timeout(self) -> float:
        """Seconds a whole request (head and body) may take to arrive, and a connection stay idle."""

    @property
    def max_connections(self) -> int:
        """Connections served at once; more wait for a slot."""

    def wait_for_slot(self, connection: BurrowProtocol) -> None:
        """Queue ``connection`` for the next free slot (it is admitted or refused later)."""

    def stop_waiting(self, connection: BurrowProtocol) -> None:
        """``connection`` no longer waits for a slot (refused, or its client left)."""

    def connection_closed(self) -> None:
        """A served connection ended: its slot is free."""

    def busy_changed(self) -> None:
        """A request started or finished on some connection."""


class _Reject(Exception):
    """Raised from a parser callback: answer ``status`` in its turn and close the connection."""

    def __init__(self, status: int, message: str, code: str = "", retry_after: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.retry_after = retry_after
        self.header = next((name for name in _FRAMING_HEADERS if name in message), "")


class BurrowProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the request limits, the connection cap, the read
    deadline and JSON errors (module docstring)."""

    def __init__(
        self, host: ConnectionHost, config: uvicorn.Config, state: ServerState, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(config, state, {}, loop)
        self.host = host
        self.timeout_keep_alive = host.read_timeout  # type: ignore[assignment]  # uvicorn's is whole seconds
        self.transport: CorkedTransport
        self.admitted = False
        self.served = 0
        self.in_head = False
        self.head_bytes = 0
        self.heads_begun = 0
        self.deadline = 0.0
        #: Set once a request was refused: nothing after it is read, its answer may wait its turn.
        self.refusal: bytes | None = None
        self._deadline_handle: asyncio.TimerHandle | None = None
        self._slot_handle: asyncio.TimerHandle | None = None

    # -- connection cap ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn
        self.transport = CorkedTransport(transport, self.loop)
        if len(self.connections) < self.host.max_connections:
            self.admit()
            return
        transport.pause_reading()
        self.host.wait_for_slot(self)
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
        self.host.stop_waiting(self)
        logger.warning("Refusing a client: %d connections open", self.host.max_connections)
        self.transport.write(
            raw_error(503, f"over {self.host.max_connections} connections", extra={"Retry-After": "1"}, code="busy")
        )
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self.transport.stop_lingering()
        if not self.admitted:
            if self._slot_handle is not None:
                self._slot_handle.cancel()
                self.host.stop_waiting(self)
            return
        super().connection_lost(exc)
        self.host.connection_closed()

    # -- parsing, the head's limits and deadline -----------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.refusal is not None or self.transport.is_closing():
            self.transport.discard(len(data))
            return
        self._unset_keepalive_if_required()
        began = self.heads_begun
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Reject):
                raise
            self.reject(exc.__context__)
            return
        except httptools.HttpParserInvalidMethodError:
            well_formed = _REQUEST_LINE.match(data) is not None
            self.reject(_Reject(501, "unsupported method") if well_formed else _Reject(400, "malformed request line"))
            return
        except httptools.HttpParserError as exc:
            self.reject(_Reject(400, f"malformed request: {exc}"))
            return
        if self.in_head:
            # A head split over reads: all of this read is head if the head began before it;
            # otherwise count what the parser took of it (an unfinished header line is not yet).
            self.head_bytes = self.head_bytes + len(data) if began == self.heads_begun else self._parsed_head_bytes()
            refusal = self._head_refusal(complete=False)
            if refusal is not None:
                self.reject(refusal)
            elif self._deadline_handle is None:
                # Only a head split over several reads needs the timer: most arrive in one.
                self._deadline_handle = self.loop.call_at(self.deadline, self._too_slow)

    def _header_bytes(self) -> int:
        """The header lines parsed so far, as sent: name, ``": "``, value and line end."""
        return sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _parsed_head_bytes(self) -> int:
        return len(self.url) + self._header_bytes()

    def _head_refusal(self, complete: bool) -> _Reject | None:
        """The limit the head so far breaks, if any (with ``complete``, the finished head's)."""
        if len(self.url) > MAX_REQUEST_TARGET:
            return _Reject(414, f"request target over {MAX_REQUEST_TARGET} bytes")
        if len(self.headers) > MAX_HEADERS:
            return _Reject(431, f"over {MAX_HEADERS} header lines")
        if self._header_bytes() > MAX_HEADER_BYTES:
            return _Reject(431, f"header lines over {MAX_HEADER_BYTES} bytes")
        if not complete and self.head_bytes > MAX_HEAD_BYTES:
            return _Reject(431, f"request line and headers over {MAX_HEAD_BYTES} bytes")
        return None

    def reject(self, refusal: _Reject) -> None:
        """Answer a refused request in JSON in its turn (now, or after the answers to the requests
        before it on this connection), then close: nothing the client sent after it is read."""
        logger.debug("Refusing a request: %d %s", refusal.status, refusal.message)
        self._cancel_deadline()
        self.in_head = False
        self.refusal = raw_error(refusal.status, refusal.message, code=refusal.code, header=refusal.header,
                                 extra={"Retry-After": "1"} if refusal.retry_after else None)
        if self.cycle is None or self.cycle.response_complete:
            self._send_refusal()

    def _send_refusal(self) -> None:
        if self.refusal is not None and not self.transport.is_closing():
            self.transport.write(self.refusal)
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.heads_begun += 1
        self.deadline = self.loop.time() + self.host.read_timeout
        self.scope["extensions"] = {"burrow": {"deadline": self.deadline, "complete": False}}

    def on_message_complete(self) -> None:
        self.scope["extensions"]["burrow"]["complete"] = True
        super().on_message_complete()

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        refusal = self._head_refusal(complete=True)
        if refusal is not None:
            raise refusal
        self._cancel_deadline()
        version = self.parser.get_http_version()
        if version not in ("1.0", "1.1"):
            raise _Reject(400, f"HTTP/{version} is not supported")
        if len(self.pipeline) >= MAX_PIPELINED:
            raise _Reject(503, f"over {MAX_PIPELINED} pipelined requests on one connection", code="busy",
                          retry_after=True)
        self.host.busy_changed()
        super().on_headers_complete()
        # The application answers this request through its own cycle (a pipelined one is not
        # self.cycle by the time it runs): see write_whole.
        self.scope["extensions"]["burrow"]["answer"] = functools.partial(write_whole, self.cycle)

    def on_response_complete(self) -> None:
        self.served += 1
        super().on_response_complete()
        if self.refusal is not None and not self.pipeline and self.cycle.response_complete:
            self._send_refusal()
        self.host.busy_changed()

    def _too_slow(self) -> None:
        """The request's head did not arrive within read_timeout: cut the connection, no answer
        (nothing to linger for)."""
        self._deadline_handle = None
        if self.in_head:
            logger.debug("Client too slow to send its request; closing the connection")
            self.transport.abort()

    def _cancel_deadline(self) -> None:
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
            self._deadline_handle = None

    # -- drain ---------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Serving a request, or not having sent its first one yet (its client is about to)."""
        if self.transport.is_closing():
            return False
        if self.cycle is None:
            return self.served == 0
        return not self.cycle.response_complete or bool(self.pipeline) or self.in_head

    def close_if_idle(self) -> None:
        """Drain: close a keep-alive connection between two requests (busy ones close after theirs)."""
        if not self.busy:
            self.transport.close()


def write_whole(cycle: RequestResponseCycle, status: int, headers: Headers, body: bytes) -> bool:
    """Send a whole answer (status line, ``headers``, ``body``) in one write, as uvicorn's ``send``
    would for its two messages; False (nothing done) when it must go through ``send`` after all.

    The answers this is for (:meth:`~burrow.daemon.http.answers.Exchange.respond` without extra
    headers) carry only headers burrow made from checked values, so uvicorn's per-header
    checks, which cost as much as the rest of the answer, are skipped. HEAD (no body) and
    paused writes (flow control waits) take uvicorn's path.
    """
    if cycle.response_started or cycle.flow.write_paused or cycle.scope["method"] == "HEAD":
        return False
    if cycle.disconnected:
        return True  # uvicorn's send drops it too
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    lines = [STATUS_LINE[status], *[name + b": " + value + b"\r\n" for name, value in headers]]
    if (b"connection", b"close") in headers:
        cycle.keep_alive = False
    elif not cycle.keep_alive:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    lines.append(body)
    cycle.transport.write(b"".join(lines))
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()
    return True


__all__ = [
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_HEAD_BYTES",
    "MAX_PIPELINED",
    "MAX_REQUEST_TARGET",
    "SLOT_WAIT",
    "BurrowProtocol",
    "ConnectionHost",
    "write_whole",
]
