"""``IOThread``: the one thread that owns a pika ``IOLoop`` and every channel on it.

An engine builds its :class:`~burrow.amqp.setup.RabbitMQSetup` objects on :attr:`IOThread.ioloop`,
starts the thread with the step that opens its connections, registers periodic work with
:meth:`call_every` (from any thread) and, to stop, calls :meth:`stop_after` on the loop: timers
cancelled, connections closed, then the loop left. Other threads reach the loop only
through :meth:`call_soon`, pika's ``add_callback_threadsafe``.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Protocol, Sequence

from pika.adapters.select_connection import IOLoop

logger = logging.getLogger(__name__)


def call_every(ioloop: IOLoop, interval: float, fn: Callable[[], None]) -> Callable[[], None]:
    """Call ``fn`` on the I/O loop every ``interval`` seconds; return a function that stops it.

    Used for deadlines, status reports and the systemd watchdog: if the loop hangs, these stop.
    """
    state: dict[str, object] = {"handle": None, "stopped": False}

    def tick() -> None:
        if state["stopped"]:
            return
        try:
            fn()
        finally:
            if not state["stopped"]:
                state["handle"] = ioloop.call_later(interval, tick)

    def cancel() -> None:
        state["stopped"] = True
        if state["handle"] is not None:
            ioloop.remove_timeout(state["handle"])

    state["handle"] = ioloop.call_later(interval, tick)
    return cancel


class Stoppable(Protocol):
    def stop(self, on_stopped: Callable[[], None]) -> None: ...


class IOThread:
    """A daemon thread running one ``IOLoop``, with periodic timers that stop with it."""

    def __init__(self, name: str) -> None:
        self.ioloop = IOLoop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._on_start: Callable[[], None] = lambda: None
        self._cancels: list[Callable[[], None]] = []

    def start(self, on_start: Callable[[], None]) -> None:
        """Start the thread; ``on_start`` runs first on it (open connections), then the loop."""
        self._on_start = on_start
        self._thread.start()

    def _run(self) -> None:
        self._on_start()
        self.ioloop.start()
        self.ioloop.close()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Any thread: run ``fn`` on the I/O thread at its next turn."""
        self.ioloop.add_callback_threadsafe(fn)

    def call_every(self, interval: float, fn: Callable[[], None]) -> None:
        """Any thread: run ``fn()`` on the I/O thread every ``interval`` seconds until stopped."""
        self.call_soon(lambda: self._cancels.append(call_every(self.ioloop, interval, fn)))

    def cancel_timers(self) -> None:
        """I/O thread, first step of a stop: no periodic work runs after this."""
        for cancel in self._cancels:
            cancel()
        self._cancels.clear()

    def stop(self) -> None:
        """I/O thread, last step of a stop: leave the loop (the thread then closes it and ends)."""
        self.cancel_timers()
        self.ioloop.stop()

    def stop_after(self, setups: Sequence[Stoppable]) -> None:
        """I/O thread: cancel the timers, stop every connection in ``setups`` and, once the last
        one reports closed, :meth:`stop` the loop."""
        self.cancel_timers()
        remaining = len(setups)

        def closed() -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0:
                self.stop()

        for setup in setups:
            setup.stop(closed)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
