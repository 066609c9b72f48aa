"""A burst of requests to the producer's Unix-socket API over HTTP/1.1 keep-alive connections.

``burrow send --count N --concurrency C`` and the benchmark's "HTTP API" row use it. One asyncio
event loop (uvloop when installed) holds ``C`` connections; each carries one request at a time and
is reused for the next, so the client spends a few tens of microseconds per request: parsing is
httptools' (the parser the daemon uses too), and no thread or connection is made per request.

A connection can be closed by the daemon between two requests: a draining producer (``systemctl
restart``) closes its idle keep-alive connections without reading what arrives on them. A request
whose reused connection is closed before a single byte of an answer came back is therefore sent
again once on a new connection, which under socket activation waits in the kernel's queue for the
next producer. A request on a fresh connection is never sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import httptools
import uvloop

from burrow.tools.burst import BurstResult, ProgressBar

logger = logging.getLogger(__name__)

#: Seconds between progress bar redraws.
PROGRESS_INTERVAL = 0.2
#: Pause before connecting again when the daemon's listen backlog was full.
CONNECT_RETRY = 0.01


class HttpStatusError(Exception):
    """The producer answered a status other than 200: ``status`` and the response ``body``."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}")


class StaleConnection(ConnectionError):
    """The server closed a reused keep-alive connection before answering: safe to send again."""


class _ClientProtocol(asyncio.Protocol):
    """One keep-alive connection: one request written at a time, its response parsed by httptools."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.answered = 0
        self.got_bytes = False
        self.keep_alive = True
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"unparsable response: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.got_bytes or not self.answered:
            self._fail(ConnectionResetError("the producer closed the connection before answering"))
        else:
            self._fail(StaleConnection("the producer closed an idle keep-alive connection"))

    def _fail(self, error: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        status = self.parser.get_status_code()
        body = b"".join(self.body)
        self.body = []
        self.got_bytes = False
        self.answered += 1
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((status, body))

    def send(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class KeepAliveClient:
    """A keep-alive connection to ``path`` that reconnects when the daemon closed it."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._protocol: _ClientProtocol | None = None

    async def _connect(self) -> _ClientProtocol:
        """A new connection; while the daemon's listen backlog is full (EAGAIN) try again shortly."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.timeout
        while True:
            try:
                _transport, protocol = await loop.create_unix_connection(_ClientProtocol, self.path)
                return protocol
            except BlockingIOError:
                if loop.time() >= give_up:
                    raise
                await asyncio.sleep(CONNECT_RETRY)

    async def post(self, target: str, body: bytes, headers: bytes = b"") -> tuple[int, bytes]:
        """POST ``body``; returns (status, response body). Sends again once on a stale connection."""
        data = (
            b"POST " + target.encode() + b" HTTP/1.1\r\nHost: burrow\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + headers + b"\r\n" + body
        )
        for attempt in (1, 2):
            protocol = self._protocol
            if protocol is None or protocol.closed or not protocol.keep_alive:
                if protocol is not None:
                    protocol.close()
                protocol = self._protocol = await self._connect()
            try:
                return await asyncio.wait_for(protocol.send(data), self.timeout)
            except StaleConnection:
                self._protocol = None
                if attempt == 2:
                    raise
                logger.debug("Keep-alive connection to %s closed by the producer; sending again", self.path)
            except BaseException:
                protocol.close()
                self._protocol = None
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None


def run_socket_burst(
    path: str,
    bodies: Sequence[bytes],
    *,
    count: int,
    concurrency: int,
    timeout: float | None = None,
    client_timeout: float = 60.0,
    max_seconds: float | None = None,
    show_progress: bool = True,
    error_kind: Callable[[BaseException], str] = lambda exc: type(exc).__name__,
    check: Callable[[bytes, bytes], bool] | None = None,
    target: str = "/v1/requests",
) -> BurstResult:
    """POST ``count`` requests (cycling through ``bodies``) to ``target`` over ``concurrency``
    keep-alive connections.

    ``timeout`` becomes each request's ``X-Burrow-Timeout``; ``client_timeout`` bounds the wait for
    one answer. A non-200 answer raises :class:`HttpStatusError` into ``error_kind``, which names
    its kind in the summary; ``check(body, reply)`` (the benchmark's) turns a wrong reply into a
    failure too. Bounded in count and, with ``max_seconds``, in time.
    """
    if count < 0 or concurrency < 1 or not bodies:
        raise ValueError("count must be >= 0, concurrency >= 1 and there must be at least one body")
    headers = f"X-Burrow-Timeout: {timeout:g}\r\n".encode() if timeout is not None else b""
    result = BurstResult(requested=count)
    progress = ProgressBar(count) if show_progress else None

    async def worker(state: list[int], deadline: float | None) -> None:
        client = KeepAliveClient(path, client_timeout)
        try:
            while state[0] < count and (deadline is None or time.monotonic() < deadline):
                index = state[0]
                state[0] += 1
                body = bodies[index % len(bodies)]
                begin = time.monotonic()
                try:
                    status, reply = await client.post(target, body, headers)
                    if status != 200:
                        raise HttpStatusError(status, reply)
                    if check is not None and not check(body, reply):
                        raise ValueError(f"wrong reply to request {index}")
                except (OSError, asyncio.TimeoutError, HttpStatusError, ValueError) as exc:
                    result.sent += 1
                    result.failed += 1
                    result.errors[error_kind(exc)] += 1
                    logger.debug("Request %d failed: %r", index, exc)
                    continue
                result.latencies.append(time.monotonic() - begin)
                result.sent += 1
        finally:
            client.close()

    async def main() -> None:
        started = time.monotonic()
        deadline = started + max_seconds if max_seconds is not None else None
        state = [0]
        workers = [asyncio.ensure_future(worker(state, deadline)) for _ in range(min(concurrency, max(count, 1)))]
        everything = asyncio.gather(*workers)
        while not everything.done():
            if progress is not None:
                progress.update(result.sent, result.failed)
            await asyncio.wait([everything], timeout=PROGRESS_INTERVAL)
        everything.result()
        result.elapsed = time.monotonic() - started

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    if progress is not None:
        progress.finish(result.sent, result.failed)
    return result


__all__ = ["HttpStatusError", "KeepAliveClient", "StaleConnection", "run_socket_burst"]
