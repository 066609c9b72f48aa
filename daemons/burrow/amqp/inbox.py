"""``Inbox``: hand work from any thread to the I/O thread with at most one pending wake-up.

Caller threads (the producer's) and handler threads (the consumer's) never touch a channel: they
:meth:`put` an item and the I/O loop runs ``on_wake`` to take it. Waking the loop costs a write to
its wake-up pipe, so a put schedules a wake-up only when none is pending: a burst of a thousand
items costs one wake-up, and ``on_wake`` takes them all. The flag is cleared before ``on_wake``
runs, so an item put while it runs schedules the next wake-up and is never stranded.
"""

from __future__ import annotations

import collections
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from pika.adapters.select_connection import IOLoop

T = TypeVar("T")


class Inbox(Generic[T]):
    """A deque that any thread appends to, drained on the I/O thread by ``on_wake``."""

    def __init__(self, ioloop: IOLoop, on_wake: Callable[[], None]) -> None:
        self._ioloop = ioloop
        self._on_wake = on_wake
        self._items: collections.deque[T] = collections.deque()
        self._wake_scheduled = False

    def put(self, item: T) -> None:
        """Any thread: queue ``item`` and make sure the I/O thread wakes up to take it."""
        self._items.append(item)
        if not self._wake_scheduled:
            self._wake_scheduled = True
            self._ioloop.add_callback_threadsafe(self._wake)

    def _wake(self) -> None:
        self._wake_scheduled = False
        self._on_wake()

    # The rest runs on the I/O thread only.

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items))

    def pop(self) -> T:
        """The oldest item (IndexError when empty)."""
        return self._items.popleft()

    def put_back(self, items: Iterable[T]) -> None:
        """Return ``items`` to the head, in their order, ahead of everything queued (no wake-up)."""
        self._items.extendleft(reversed(list(items)))
