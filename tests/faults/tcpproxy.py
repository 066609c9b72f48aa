"""A loopback TCP proxy between burrow and the broker that the fault tests can break on purpose.

``TcpProxy(host, port)`` listens on a free 127.0.0.1 port and forwards every connection to
``host:port`` from an asyncio loop in its own thread. Faults, each applied to all connections open
at that moment: :meth:`cut` closes them cleanly (FIN), :meth:`reset` aborts them (RST, via
``SO_LINGER`` 0), :meth:`stall` stops forwarding in both directions for a while with the sockets
left open, as a silent network partition does, so only heartbeats can notice it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
from types import TracebackType
from typing import Callable

logger = logging.getLogger(__name__)

CHUNK = 65536


class TcpProxy:
    """Forward 127.0.0.1:``port`` to ``target_host``:``target_port`` until :meth:`close`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)

    def start(self) -> "TcpProxy":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        logger.info("TCP proxy 127.0.0.1:%d -> %s:%d", self.port, *self.target)
        return self

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        pair = (client_writer, upstream_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._pump(client_reader, upstream_writer), self._pump(upstream_reader, client_writer),
                                 return_exceptions=True)
        finally:
            self._pairs.discard(pair)
            for writer in pair:
                writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction; while stalled, hold the data (and stop reading) without closing."""
        assert self._flowing is not None
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        finally:
            if writer.can_write_eof() and not writer.is_closing():
                try:
                    writer.write_eof()
                except OSError:
                    pass

    def _call(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the proxy's loop and wait for it."""
        async def run() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def cut(self) -> int:
        """Close every open connection cleanly on both sides; return how many."""
        count = len(self._pairs)

        def close_all() -> None:
            for pair in list(self._pairs):
                for writer in pair:
                    writer.close()

        self._call(close_all)
        logger.info("TCP proxy: cut %d connections", count)
        return count

    def reset(self) -> int:
        """Abort every open connection with a TCP RST on both sides; return how many."""
        count = len(self._pairs)

        def abort_all() -> None:
            for pair in list(self._pairs):
                for writer in pair:
                    sock = writer.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()

        self._call(abort_all)
        logger.info("TCP proxy: reset %d connections", count)
        return count

    def stall(self, seconds: float) -> None:
        """Stop forwarding for ``seconds`` (blocking the caller meanwhile), then flow again."""
        assert self._flowing is not None
        self._call(self._flowing.clear)
        logger.info("TCP proxy: stalled for %.1fs", seconds)
        stop = threading.Event()
        stop.wait(seconds)
        self._call(self._flowing.set)

    def close(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for pair in list(self._pairs):
                for writer in pair:
                    writer.transport.abort()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
