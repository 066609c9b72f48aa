"""The daemon's one asyncio event-loop thread, and the step timer that finds handlers blocking it.

Every coroutine handler of a process runs on one loop (:func:`acquire` / :func:`release`, counted,
so two services share it and the last one to stop ends it). The thread starts with the first pool,
before any request arrives, so an idle daemon already has every thread it will use.

A coroutine that makes a blocking call (``time.sleep``, a sync HTTP client) holds the whole loop:
every other request on it waits. :class:`TimedSteps` runs a handler's coroutine one step (one
``send`` between two awaits) at a time, measures each, and reports a step longer than the threshold
to its callback, which logs the handler's name and for how long it held the loop; the handler
itself carries on. This is what asyncio's debug mode does with ``slow_callback_duration``, but per
handler and without debug mode's cost on every coroutine.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable, Coroutine, Generator

logger = logging.getLogger(__name__)

#: How long a stopping loop waits for the coroutines it cancelled to unwind.
STOP_TIMEOUT = 5.0


class _LoopThread:
    """One event loop running in its own daemon thread, shared by counted users."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def acquire(self) -> asyncio.AbstractEventLoop:
        """The running loop, started now if this is its first user."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()
                loop.call_soon(started.set)
                self._thread = threading.Thread(target=loop.run_forever, name="burrow-asyncio", daemon=True)
                self._thread.start()
                started.wait()
                self._loop = loop
            self._users += 1
            return self._loop

    def release(self) -> None:
        """One user less; the last one stops the loop, waits for its thread and closes it."""
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._loop is None or self._thread is None:
                return
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            logger.warning("The asyncio handler loop did not stop within %.0fs (a handler is blocking it); "
                           "leaving it to end with the process", STOP_TIMEOUT)
            return
        loop.close()


_shared = _LoopThread()
acquire = _shared.acquire
release = _shared.release


class TimedSteps:
    """Await ``coro`` step by step, calling ``on_blocked(seconds)`` after a step that held the loop
    longer than ``threshold`` seconds. Results, exceptions and cancellation pass through unchanged."""

    __slots__ = ("_coro", "_threshold", "_on_blocked")

    def __init__(self, coro: Coroutine[Any, Any, Any], threshold: float, on_blocked: Callable[[float], None]) -> None:
        self._coro = coro
        self._threshold = threshold
        self._on_blocked = on_blocked

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self._coro
        value: Any = None
        thrown: BaseException | None = None
        while True:
            started = time.perf_counter()
            try:
                yielded = coro.send(value) if thrown is None else coro.throw(thrown)
            except StopIteration as stop:
                self._check(started)
                return stop.value
            except BaseException:
                self._check(started)
                raise
            self._check(started)
            try:
                value, thrown = (yield yielded), None
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation included: the handler sees it where it awaits
                value, thrown = None, exc

    def _check(self, started: float) -> None:
        held = time.perf_counter() - started
        if held > self._threshold:
            self._on_blocked(held)
