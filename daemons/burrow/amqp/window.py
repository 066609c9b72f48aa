"""``RequestWindow``: the consumer's prefetch, one request at a time while redeliveries arrive;
``AdaptiveWindow``: the open window's size moved by the replies' confirm latency (opt-in).

After every subscribe the window is one request ("probation") and stays there while the broker hands
back redeliveries: a consumer that crashed returns every request it held, and one of them may be
the request that crashed it. Taking those one at a time means only that request is unacked when it
crashes the next consumer, so the quorum queue's delivery limit dead-letters it alone instead of
every request delivered beside it. The first fresh (not redelivered) request opens the full window;
the owner then registers one consumer more for the rest of it (:mod:`burrow.amqp.registrations`).
"""

from __future__ import annotations

import logging
from typing import Callable

logger = logging.getLogger(__name__)


class RequestWindow:
    """Probation state of one consuming channel; ``full()`` gives the open window's size."""

    def __init__(self, full: Callable[[], int]) -> None:
        self._full = full
        self.probation = True
        self._redeliveries = 0

    def size(self) -> int:
        """The prefetch to register with now."""
        return 1 if self.probation else self._full()

    def restart(self) -> None:
        """A new consuming channel: back to one request until a fresh one arrives."""
        self.probation = True
        self._redeliveries = 0

    def on_delivery(self, redelivered: bool) -> bool:
        """Count one delivery; True when it is the fresh request that opens the full window."""
        if not self.probation:
            return False
        if redelivered:
            self._redeliveries += 1
            if self._redeliveries == 1:
                logger.info("Redelivered requests waiting: taking them one at a time until a fresh one arrives")
            return False
        if self._redeliveries:
            logger.info("Took %d redelivered requests one at a time; request window is now %d",
                        self._redeliveries, self._full())
        self.probation = False
        self._redeliveries = 0
        return True


#: Seconds between two looks at the confirm latency of an adaptive window.
ADAPT_EVERY = 1.0
#: Confirmed replies a look needs; fewer say nothing about the latency.
MIN_SAMPLES = 20
#: The median latency within this factor of the lowest median seen counts as flat: grow.
FLAT = 1.5
#: Above this factor of the lowest median seen the latency has risen: shrink.
RISEN = 2.5
#: The adaptive window's bounds, in requests per worker.
LOW_PER_WORKER = 1
HIGH_PER_WORKER = 16


class AdaptiveWindow:
    """``consumer.window = "adaptive"``: the open window's size, moved by the replies' confirm latency.

    The consumer reports, for every confirmed reply, the seconds from its handler's end to the
    broker's confirm (:meth:`observe`), and how many requests it held. Every :data:`ADAPT_EVERY`
    seconds with at least :data:`MIN_SAMPLES` replies, :meth:`decide` compares their median with
    the lowest median seen so far (the path unloaded): within :data:`FLAT` times of it, and with the
    window filled, it grows by one request per worker; above :data:`RISEN` times it shrinks by a
    quarter; always between :data:`LOW_PER_WORKER` and :data:`HIGH_PER_WORKER` per worker (and
    AMQP's 65535). The owner applies a new size by registering again, so a change comes at most
    once a period.
    """

    def __init__(self, start: int, workers: Callable[[], int]) -> None:
        self._workers = workers
        self.size = start
        self._samples: list[float] = []
        self._held = 0
        self._lowest: float | None = None
        self._since: float | None = None

    def reset(self, start: int) -> None:
        """A new worker count: start again from its configured window."""
        self.size = start
        self._samples.clear()
        self._held = 0
        self._since = None

    def observe(self, latency: float, held: int) -> None:
        self._samples.append(latency)
        self._held = max(self._held, held)

    def decide(self, now: float) -> int | None:
        """The new window size when it changes now, else None."""
        if self._since is None:
            self._since = now
        if now - self._since < ADAPT_EVERY or len(self._samples) < MIN_SAMPLES:
            return None
        median = sorted(self._samples)[len(self._samples) // 2]
        filled = self._held >= self.size
        self._samples.clear()
        self._held = 0
        self._since = now
        if self._lowest is None or median < self._lowest:
            self._lowest = median
        workers = self._workers()
        low, high = LOW_PER_WORKER * workers, min(HIGH_PER_WORKER * workers, 65535)
        if median > RISEN * self._lowest:
            size = max(low, self.size * 3 // 4)
        elif median <= FLAT * self._lowest and filled:
            size = min(high, self.size + workers)
        else:
            size = self.size
        if size == self.size:
            return None
        logger.info("Request window %d -> %d: reply confirm latency %.2f ms (lowest %.2f ms)", self.size, size,
                    median * 1000, self._lowest * 1000)
        self.size = size
        return size
