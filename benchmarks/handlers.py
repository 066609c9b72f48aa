"""Handlers the benchmark's consumer processes load (``consumer.handler = "benchmarks.handlers:..."``).

Kept apart from the scenarios so that a consumer process imports nothing but this and burrow.
"""

from __future__ import annotations

import asyncio
import time

#: One request in this many is slow in :func:`mixed`.
SLOW_EVERY = 10
#: Seconds a slow request spends in its handler.
SLOW_SECONDS = 0.02
#: What one request of :func:`sleep_10ms` and :func:`sync_sleep_10ms` waits (seconds).
WAIT_SECONDS = 0.010


def body(index: int) -> bytes:
    """Request ``index``'s body: every :data:`SLOW_EVERY`-th one asks for the slow path."""
    return (b"slow" if index % SLOW_EVERY == 0 else b"fast") + b"-" + str(index).encode()


def mixed(request: bytes) -> bytes:
    """Sleep :data:`SLOW_SECONDS` for a body starting with ``slow``; echo every body."""
    if request.startswith(b"slow"):
        time.sleep(SLOW_SECONDS)
    return b"Consumer processed: " + request


async def sleep_10ms(request: bytes) -> bytes:
    """Await :data:`WAIT_SECONDS` on the consumer's event loop (I/O-bound work), then echo."""
    await asyncio.sleep(WAIT_SECONDS)
    return b"Consumer processed: " + request


def sync_sleep_10ms(request: bytes) -> bytes:
    """The same wait in a worker thread: sleep :data:`WAIT_SECONDS`, then echo."""
    time.sleep(WAIT_SECONDS)
    return b"Consumer processed: " + request
