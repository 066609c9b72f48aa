"""The producer's requests ordered by when they time out, and the error each one gets then.

:class:`Deadlines` is a min-heap of ``(deadline, key)``: :meth:`Deadlines.expired` pops every key
whose deadline passed. A request answered earlier leaves its entry behind (removing it from a heap
would cost a search); :class:`RequestDeadlines`, the producer's I/O thread's view, skips expired
keys no longer in flight and rebuilds the heap from the live requests once it holds many more
entries than there are, so it stays bounded. Each request that times out gets a
:class:`~burrow.errors.RequestTimeout` saying whether the broker had confirmed its publish by then.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Iterable

from burrow.errors import RequestTimeout
from burrow.inflight import InFlight, Request


class Deadlines:
    """Keys ordered by deadline (``time.monotonic()`` seconds); I/O thread only."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()  # ties keep insertion order and never compare keys

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, deadline: float, key: str) -> None:
        heapq.heappush(self._heap, (deadline, next(self._seq), key))

    def expired(self, now: float) -> list[str]:
        """Remove and return the keys whose deadline is at or before ``now``, earliest first."""
        heap = self._heap
        keys = []
        while heap and heap[0][0] <= now:
            keys.append(heapq.heappop(heap)[2])
        return keys

    def rebuild(self, live: Iterable[tuple[float, str]]) -> None:
        """Keep only ``live`` ``(deadline, key)`` entries, dropping those of finished requests."""
        self._heap = [(deadline, next(self._seq), key) for deadline, key in live]
        heapq.heapify(self._heap)


class RequestDeadlines:
    """The producer's published requests by deadline (I/O thread only): :meth:`expired` hands each
    one whose deadline passed to the producer with its :class:`RequestTimeout`."""

    def __init__(self, in_flight: InFlight) -> None:
        self._heap = Deadlines()
        self._in_flight = in_flight

    def published(self, request: Request) -> None:
        """``request`` went out for the first time; from now on its deadline is watched here."""
        self._heap.add(request.deadline, request.correlation_id)

    def expired(self, now: float, unsent: Iterable[Request] = ()) -> list[tuple[Request, RequestTimeout]]:
        """The requests in flight whose deadline passed by ``now``, each with its error, plus those of
        ``unsent`` whose deadline passed (requests waiting for a connection, which the producer
        passes while it has none: never published, they are not watched here). The producer fails
        each one; a request listed twice is failed once, since the producer settles each only once."""
        if len(self._heap) > 4 * len(self._in_flight) + 1024:
            self._heap.rebuild((r.deadline, r.correlation_id) for r in self._in_flight.snapshot() if r.published)
        expired: list[tuple[Request, RequestTimeout]] = []
        for correlation_id in self._heap.expired(now):
            request = self._in_flight.get(correlation_id)
            if request is not None:
                why = f"no reply within the request's deadline (correlation id {correlation_id})"
                expired.append((request, RequestTimeout(why, confirmed=request.confirmed)))
        for request in unsent:
            if request.deadline <= now:
                expired.append((request, RequestTimeout("broker unreachable until the request's deadline",
                                                        confirmed=request.confirmed)))
        return expired
