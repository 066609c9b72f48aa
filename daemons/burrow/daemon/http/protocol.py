"""One client connection: uvicorn's httptools protocol plus what this API promises on top of it.

uvicorn parses HTTP/1.1 (httptools/llhttp), keeps connections alive, queues pipelined requests,
does flow control and ``100 Continue``, and runs the ASGI application once per request.
:class:`BurrowProtocol` adds, before the application sees anything: JSON answers for requests
the parser refuses (400, 431, 501), a cap on the request head's size, the connection cap (beyond
``max_connections`` a client waits up to :data:`SLOT_WAIT` for a slot, then gets 503), the
whole-request read deadline (request line, headers and body within ``read_timeout`` of the first
byte, so a slow-loris client trickling one byte at a time is cut off; an idle connection is
closed after ``read_timeout`` too) and the bookkeeping the drain needs. :class:`CorkedTransport`
sends the writes of one loop iteration in one system call.

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
  ``timeout_keep_alive`` and ``timeout_keep_alive_task``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from typing import Any, Protocol

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from burrow.daemon.http.answers import raw_error

logger = logging.getLogger(__name__)

#: How long a connection over ``max_connections`` waits for a free slot before it is answered 503.
SLOT_WAIT = 1.0
#: Largest request line plus headers (bytes); a longer head is answered 431.
MAX_HEAD_BYTES = 65536

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
    """Raised from a parser callback: answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BurrowProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the connection cap, the read deadline and JSON errors."""

    def __init__(
        self, host: ConnectionHost, config: uvicorn.Config, state: ServerState, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(config, state, {}, loop)
        self.host = host
        self.timeout_keep_alive = host.read_timeout  # type: ignore[assignment]  # uvicorn's is whole seconds
        self.admitted = False
        self.served = 0
        self.in_head = False
        self.head_bytes = 0
        self.deadline = 0.0
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
        if not self.admitted:
            if self._slot_handle is not None:
                self._slot_handle.cancel()
                self.host.stop_waiting(self)
            return
        super().connection_lost(exc)
        self.host.connection_closed()

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
            self.transport.write(raw_error(status, message))
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.deadline = self.loop.time() + self.host.read_timeout
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
        self.host.busy_changed()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self.served += 1
        super().on_response_complete()
        self.host.busy_changed()

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


class CorkedTransport(asyncio.Transport):
    """A connection's transport whose writes within one loop iteration leave in one ``write``.

    uvicorn writes a response's head and body separately; corked, they cost one system call (and,
    for pipelined requests, several responses share one). ``close`` sends what is pending first;
    ``abort`` drops it. Every other method is the wrapped transport's own.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Send what was written since the last flush (scheduled by the first write)."""
        if self._pending:
            data = b"".join(self._pending)
            self._pending = []
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()


__all__ = ["MAX_HEAD_BYTES", "SLOT_WAIT", "BurrowProtocol", "ConnectionHost", "CorkedTransport"]
