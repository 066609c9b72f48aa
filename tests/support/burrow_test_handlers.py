"""Handlers that tests load by name (``burrow_test_handlers:NAME``), in-process or in a daemon."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from burrow import tracing
from burrow.handlers import RequestContext

SEEN_LOCK = threading.Lock()
SEEN: list[bytes] = []


def record(body: bytes, context: RequestContext) -> bytes:
    """Remember every body (whether it was a redelivery, and its correlation id), then echo: in
    the file ``BURROW_TEST_RECORD`` names when set (consumer processes), else in :data:`SEEN`
    (in-process tests). Only one of the two, so a long run's memory stays flat (the soak).

    With ``BURROW_TEST_HOLD`` (seconds) set, the handler keeps each request that long after
    recording it, so that a fault always finds requests in the consumers' hands, and a test can
    see from outside which ones (recorded, not yet answered)."""
    log = os.environ.get("BURROW_TEST_RECORD")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{body.decode()} {int(context.redelivered)} {context.correlation_id}\n")
    else:
        with SEEN_LOCK:
            SEEN.append(body)
    hold = float(os.environ.get("BURROW_TEST_HOLD", "0"))
    if hold:
        time.sleep(hold)
    return b"Consumer processed: " + body


def slow(body: bytes) -> bytes:
    """Sleep for the number of seconds the body names (e.g. b'0.5'), then echo."""
    time.sleep(float(body.split(b":")[0]))
    return b"Consumer processed: " + body


def fail(body: bytes) -> bytes:
    raise ValueError(f"cannot handle {body.decode()!r}")


def poison(body: bytes, context: RequestContext) -> bytes:
    """Kill the whole consumer process on b'poison'; record and echo everything else, after 0.3 s
    for bodies that start with b'slow:' (so that they are still unacked when the poison strikes)."""
    if body == b"poison":
        Path(os.environ["BURROW_TEST_RECORD"]).open("a").write("poison-hit\n")
        os._exit(3)
    if body.startswith(b"slow:"):
        time.sleep(0.3)
    return record(body, context)


def returns_text(body: bytes) -> str:
    return "not bytes"


def trace(body: bytes, context: RequestContext) -> bytes:
    """Answer with the request's trace id as the handler sees it: from its context, and as active."""
    return f"{context.trace_id} {tracing.current()}".encode()


def upper(body: bytes, context: RequestContext) -> bytes:
    """The ``upper`` service of the services tests: answer ``upper:<BODY>`` with the correlation id,
    so a reply shows which handler made it and for which request."""
    return b"upper:" + body.upper() + b" " + context.correlation_id.encode()


def reverse(body: bytes, context: RequestContext) -> bytes:
    """The ``reverse`` service of the services tests: ``reverse:<ydob>`` with the correlation id."""
    return b"reverse:" + body[::-1] + b" " + context.correlation_id.encode()


def sleep_one_second(body: bytes) -> bytes:
    """A slow service: every request takes one second."""
    time.sleep(1.0)
    return b"slept: " + body
