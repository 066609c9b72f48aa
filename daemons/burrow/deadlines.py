"""``Deadlines``: the producer's requests ordered by when they time out.

A min-heap of ``(deadline, key)``: :meth:`Deadlines.expired` pops every key whose deadline passed.
A request answered earlier leaves its entry behind (removing it from a heap would cost a search);
the owner ignores expired keys it no longer knows and calls :meth:`Deadlines.rebuild` with the live
entries once the heap holds many more entries than live requests, so it stays bounded.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Iterable


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
