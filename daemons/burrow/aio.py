"""``burrow.aio.Producer``: the producer for asyncio applications, awaitable, on the same engine.

It wraps a threaded :class:`burrow.producer.Producer`, its engine: the same I/O thread,
connection, publisher confirms, deadlines and in-flight table, so every guarantee of the threaded
producer holds and nothing of AMQP is implemented twice. Each request's ``concurrent.futures``
future becomes an ``asyncio.Future`` of the loop that submitted it (``asyncio.wrap_future``), so one
producer serves any number of running loops. Cancelling the awaiting task cancels the request: the
engine frees its in-flight slot at once and counts it ``cancelled``; a reply that still comes is
dropped and counted as late (``duplicate_replies``), like a timed-out request's.

    async with burrow.aio.Producer(config) as producer:
        reply = await producer.call(b"hello", service="resize", timeout=5)
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from burrow.config import BurrowConfig
from burrow.errors import Backpressure
from burrow.producer import Producer as ThreadedProducer
from burrow.stats import ProducerStats

#: Longest pause between two tries of :meth:`Producer.call` for a free in-flight slot (seconds).
SLOT_RETRY_MAX = 0.05


class Producer:
    """Awaitable requests to burrow services, from any running asyncio loop.

    Give a ``config`` (the producer is then this object's own: :meth:`start`/:meth:`stop`, or
    ``async with``, run it), or ``engine=`` a threaded producer to share with threaded callers
    (started and stopped by its owner). ``kwargs`` go to the threaded producer (``instance_id``,
    ``name``).
    """

    def __init__(self, config: BurrowConfig | None = None, *, engine: ThreadedProducer | None = None,
                 **kwargs: Any) -> None:
        if (config is None) == (engine is None):
            raise TypeError("burrow.aio.Producer takes a config or engine=<a threaded Producer>, not both or neither")
        self.engine = engine if engine is not None else ThreadedProducer(config, **kwargs)  # type: ignore[arg-type]
        self._owns_engine = engine is None
        self._connect_wait = None if config is None else config.rabbitmq.socket_timeout

    @property
    def connected(self) -> bool:
        return self.engine.connected

    @property
    def in_flight(self) -> int:
        """Requests submitted and not yet answered, failed, timed out or cancelled."""
        return self.engine.in_flight

    def stats(self) -> ProducerStats:
        return self.engine.stats()

    async def start(self, wait: float | None = None) -> "Producer":
        """Start the engine's I/O thread (when this object owns it); with ``wait``, wait up to that
        many seconds for the first connect (in a worker thread, the loop keeps running). Requests
        submitted before it is connected wait in memory and go out on connect, as with the
        threaded producer."""
        if self._owns_engine:
            self.engine.start()
        if wait is not None:
            await asyncio.to_thread(self.engine.wait_ready, wait)
        return self

    async def stop(self, timeout: float | None = None) -> None:
        """Stop the engine (when this object owns it): in-flight requests get up to ``timeout``
        seconds (``producer.shutdown_timeout``) to be answered, the rest fail with
        :class:`~burrow.errors.BrokerUnavailable`. Runs in a worker thread; the loop keeps running."""
        if self._owns_engine:
            await asyncio.to_thread(self.engine.stop, timeout)

    def submit(self, body: bytes, *, timeout: float | None = None, headers: dict[str, Any] | None = None,
               service: str | None = None) -> "asyncio.Future[bytes]":
        """Send ``body`` to ``service`` and return a future of the running loop for its reply; it
        fails as the threaded producer's does (:class:`~burrow.errors.RequestTimeout`,
        :class:`~burrow.errors.RemoteError`, :class:`~burrow.errors.Rejected`, ...).

        Never blocks the loop: with ``producer.max_in_flight`` requests outstanding it raises
        :class:`~burrow.errors.Backpressure` (:meth:`call` waits for a slot instead).
        """
        loop = asyncio.get_running_loop()
        future = self.engine.submit(body, timeout=timeout, headers=headers, block=False, service=service)
        return asyncio.wrap_future(future, loop=loop)

    async def call(self, body: bytes, *, timeout: float | None = None, headers: dict[str, Any] | None = None,
                   service: str | None = None) -> bytes:
        """Send ``body`` to ``service`` and await its reply, first waiting for a free in-flight slot
        if ``producer.max_in_flight`` requests are outstanding; raises what :meth:`submit`'s future
        fails with. Cancelling the awaiting task cancels the request (its slot is freed at once)."""
        pause = 0.001
        while True:
            try:
                future = self.submit(body, timeout=timeout, headers=headers, service=service)
            except Backpressure:
                # Slots free up on the engine's thread, which cannot wake this loop's waiters; a
                # short, growing pause keeps the loop free meanwhile.
                await asyncio.sleep(pause)
                pause = min(pause * 2, SLOT_RETRY_MAX)
                continue
            return await future

    async def __aenter__(self) -> "Producer":
        return await self.start(wait=self._connect_wait)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
