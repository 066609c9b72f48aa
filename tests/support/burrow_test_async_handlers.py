"""``async def`` handlers that tests load by name (``burrow_test_async_handlers:NAME``), in-process
or in a daemon; what they saw goes to :data:`EVENTS` (in-process) or, when ``BURROW_TEST_RECORD``
names a file, to that file (daemons), one ``<event> <body>`` line each."""

from __future__ import annotations

import asyncio
import os
import threading
import time

from burrow.handlers import RequestContext

import burrow_test_handlers

EVENTS_LOCK = threading.Lock()
EVENTS: list[tuple[str, bytes]] = []


def note(event: str, body: bytes) -> None:
    """Record that ``event`` happened to the request ``body``."""
    log = os.environ.get("BURROW_TEST_RECORD")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{event} {body.decode()}\n")
    else:
        with EVENTS_LOCK:
            EVENTS.append((event, body))


async def sleep_one_second(body: bytes) -> bytes:
    """Wait one second on the loop (I/O-bound work), then echo."""
    await asyncio.sleep(1.0)
    return b"Consumer processed: " + body


def sync_sleep_one_second(body: bytes) -> bytes:
    """The same work for a worker thread: one second, then echo."""
    time.sleep(1.0)
    return b"Consumer processed: " + body


async def held(body: bytes) -> bytes:
    """Note the start, await the seconds the body names (``b'2:id'``), note the end, echo; a
    cancelled one notes ``cancelled``."""
    note("started", body)
    try:
        await asyncio.sleep(float(body.split(b":")[0]))
    except asyncio.CancelledError:
        note("cancelled", body)
        raise
    note("finished", body)
    return b"Consumer processed: " + body


async def record_slow(body: bytes, context: RequestContext) -> bytes:
    """Record and echo like ``burrow_test_handlers:record``, after awaiting 0.3 s for bodies that
    start with b'slow:' (so that a consumer killed mid-load surely holds some awaiting)."""
    if body.startswith(b"slow:"):
        await asyncio.sleep(0.3)
    return burrow_test_handlers.record(body, context)


async def fail(body: bytes) -> bytes:
    await asyncio.sleep(0)
    raise ValueError(f"cannot handle {body.decode()!r}")


async def redelivered(body: bytes, context: RequestContext) -> bytes:
    """Answer whether the broker flagged the request as a redelivery."""
    await asyncio.sleep(0)
    return f"redelivered={context.redelivered}".encode()


async def blocking(body: bytes) -> bytes:
    """For ``b'block:<seconds>'`` make the mistake this test catches: a blocking sleep inside
    ``async def``, holding the event loop; otherwise answer at once."""
    if body.startswith(b"block:"):
        time.sleep(float(body.split(b":")[1]))
    await asyncio.sleep(0)
    return b"Consumer processed: " + body
