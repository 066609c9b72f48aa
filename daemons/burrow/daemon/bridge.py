"""Hand ``concurrent.futures.Future`` results from the producer's I/O thread to an asyncio loop.

``Producer.submit`` returns a ``concurrent.futures.Future`` that the AMQP I/O thread resolves.
``asyncio.wrap_future`` would wake the event loop once per resolved future (one
``call_soon_threadsafe``, i.e. one write to the loop's self-pipe, each). The bridge instead queues
finished futures on a deque and wakes the loop only when the deque was empty, so a burst of
replies that the I/O thread settles in one turn costs one wake-up, and no thread waits per request.
A request's give-up timer is cancelled there too, without a done callback of its own.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class FutureBridge:
    """Awaitable views of thread-resolved futures for the one event loop the bridge belongs to."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._done: collections.deque[
            tuple[concurrent.futures.Future[object], asyncio.Future[object], asyncio.TimerHandle | None]
        ] = collections.deque()
        self._lock = threading.Lock()
        self._wake_pending = False

    def wrap(self, future: concurrent.futures.Future[T], give_up: float | None = None) -> asyncio.Future[T]:
        """An asyncio future (of the bridge's loop) that settles like ``future``; call on the loop.

        With ``give_up`` (a ``loop.time()``), the waiter fails with ``TimeoutError`` then if
        ``future`` has not settled: one timer handle, cheaper than ``asyncio.timeout`` per request.
        """
        waiter: asyncio.Future[T] = self._loop.create_future()
        timer = None if give_up is None else self._loop.call_at(give_up, _expire, waiter)

        def finished(source: concurrent.futures.Future[T]) -> None:
            with self._lock:
                self._done.append((source, waiter, timer))  # type: ignore[arg-type]
                if self._wake_pending:
                    return
                self._wake_pending = True
            try:
                self._loop.call_soon_threadsafe(self._settle)
            except RuntimeError:
                logger.debug("Event loop closed before a reply could be handed over")

        future.add_done_callback(finished)
        return waiter

    def _settle(self) -> None:
        """On the loop: copy every queued outcome into its asyncio future."""
        with self._lock:
            ready = self._done
            self._done = collections.deque()
            self._wake_pending = False
        for source, waiter, timer in ready:
            if timer is not None:
                timer.cancel()
            if waiter.done():
                continue  # the request gave up already (its client left, or the grace ran out)
            if source.cancelled():
                waiter.cancel()
                continue
            error = source.exception()
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(source.result())


def _expire(waiter: asyncio.Future[object]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no outcome before the give-up time"))


__all__ = ["FutureBridge"]
