"""A connection's transport as the protocol uses it: writes corked per loop turn, a lingering close.

uvicorn writes a response's head and body separately; corked, the writes of one loop iteration
leave in one system call (and, for pipelined requests, several responses share one).

Closing is lingering, as in web servers that answer before reading a whole request: the answer is
sent, the write side shut (the client reads the answer, then end of file), and whatever the
client still sends is read and dropped until it closes too, for at most :data:`LINGER_SECONDS`
and :data:`LINGER_BYTES`. A client still writing a body the API refused (413) or a header flood
(431) therefore reads its answer instead of a reset, which is what an immediate close with unread
input would give it. While lingering the transport says it is closing, so uvicorn starts nothing
more on the connection; the protocol drops what arrives through :meth:`CorkedTransport.discard`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

#: Longest a closed connection keeps reading (and dropping) what its client still sends.
LINGER_SECONDS = 2.0
#: Most bytes dropped that way; a client sending more is cut off (it gets a reset).
LINGER_BYTES = 8 * 1024 * 1024


class CorkedTransport(asyncio.Transport):
    """The connection's transport with corked writes and a lingering :meth:`close`; every other
    method is the wrapped transport's own."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._closing = False
        self._dropped = 0
        self._linger_handle: asyncio.TimerHandle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
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
        """Send what is pending, shut the write side and linger (module docstring); then close."""
        if self._closing:
            return
        self._closing = True
        self.flush()
        transport = self._transport
        if transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        transport.resume_reading()
        self._linger_handle = self._loop.call_later(LINGER_SECONDS, transport.close)

    def discard(self, size: int) -> None:
        """``size`` bytes arrived after :meth:`close`: dropped, until :data:`LINGER_BYTES` are."""
        self._dropped += size
        if self._dropped > LINGER_BYTES:
            self.abort()

    def stop_lingering(self) -> None:
        """The connection is gone (or cut): the linger timer has nothing left to close."""
        if self._linger_handle is not None:
            self._linger_handle.cancel()
            self._linger_handle = None

    def abort(self) -> None:
        self._closing = True
        self._pending = []
        self.stop_lingering()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        if not self._closing:
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


__all__ = ["LINGER_BYTES", "LINGER_SECONDS", "CorkedTransport"]
