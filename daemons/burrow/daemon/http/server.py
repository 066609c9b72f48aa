"""``HttpApi``: the producer API's listening socket, its event loop thread, and the drain.

One thread runs an asyncio event loop (uvloop) that serves every connection with
:class:`~burrow.daemon.http.protocol.BurrowProtocol` and every request with the application
:class:`~burrow.daemon.http.app.App`; no thread per connection or per request. The socket is
systemd's under socket activation, else one bound here (:mod:`burrow.daemon.sockets`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
from collections.abc import Callable

import uvicorn
import uvloop
from uvicorn.server import ServerState

from burrow.daemon.http.app import App, ProducerAPI
from burrow.daemon.http.protocol import BurrowProtocol
from burrow.daemon.sockets import bind_socket, inherited_socket

logger = logging.getLogger(__name__)

#: Connections are cheap on the event loop (a few KiB each, no thread): the cap leaves room above
#: the benchmark's 256 keep-alive connections while staying well under the 1024 descriptors of a
#: systemd service's default soft ``LimitNOFILE``.
DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_READ_TIMEOUT = 10.0
#: Listen backlog (asyncio calls ``listen()`` again on the socket it serves, systemd's too).
BACKLOG = 1024


class HttpApi:
    """The producer's HTTP API: owns the listening socket, the event loop thread and the drain.

    Lifecycle, driven by the producer daemon: :meth:`start` before ``READY=1`` (the socket listens
    from then on); on SIGTERM :meth:`stop_accepting`, :meth:`drain` while the producer still answers,
    then :meth:`close`. :meth:`reconfigure` applies a SIGHUP reload's timeouts and size limit.
    Those methods are called from other threads; they hand their work to the loop. The rest
    (``wait_for_slot`` to ``busy_changed``) is called by the connections, on the loop.
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
        self._waiting: collections.deque[BurrowProtocol] = collections.deque()
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
            App(self), http="httptools", ws="none", loop="none", lifespan="off", log_config=None,
            access_log=False, proxy_headers=False, server_header=False, date_header=False,
        )
        config.load()
        try:
            self._server = loop.run_until_complete(
                loop.create_unix_server(
                    lambda: BurrowProtocol(self, config, self._state, loop), sock=sock, backlog=BACKLOG
                )
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

    # -- called by the connections, on the loop ------------------------------------------------

    def wait_for_slot(self, connection: BurrowProtocol) -> None:
        """``connection`` arrived over ``max_connections``: it gets the next slot that comes free."""
        self._waiting.append(connection)

    def stop_waiting(self, connection: BurrowProtocol) -> None:
        """``connection`` gave up waiting for a slot (refused, or its client left)."""
        self._waiting.remove(connection)

    def connection_closed(self) -> None:
        """A slot came free: give it to the longest-waiting client, if any."""
        while self._waiting and len(self._state.connections) < self.max_connections:
            waiting = self._waiting.popleft()
            if not waiting.transport.is_closing():
                waiting.admit()
        self.busy_changed()

    def busy_changed(self) -> None:
        """A request started or finished: wake :meth:`drain`; when draining, close idle connections."""
        if not self.draining and not self._idle_waiters:
            return
        if self.draining:
            for connection in self._connections():
                connection.close_if_idle()
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- on the loop ---------------------------------------------------------------------------

    def _connections(self) -> list[BurrowProtocol]:
        """The connections holding a slot (uvicorn's server state keeps them, typed as its own)."""
        return [c for c in self._state.connections if isinstance(c, BurrowProtocol)]

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
        for connection in self._connections():
            connection.close_if_idle()

    async def _wait_idle(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            busy = [c for c in self._connections() if c.busy]
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
        for connection in self._connections() + list(self._waiting):
            connection.transport.abort()
        tasks = list(self._state.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["BACKLOG", "DEFAULT_MAX_CONNECTIONS", "DEFAULT_READ_TIMEOUT", "HttpApi"]
