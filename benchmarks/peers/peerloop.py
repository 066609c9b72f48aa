"""The command loop and workloads every peer client runs, inside the peer's own virtualenv.

The peers (Celery, nameko, aio-pika) cannot share burrow's venv, so their clients are separate
scripts run with their venv's Python; this module is the half of :mod:`benchmarks.clients`'s
protocol they need, in the standard library only: one JSON command per line on stdin, one JSON
result per line on stdout (``{"ready": true}`` first). Commands and results are those of
``benchmarks.clients``: ``["closed", count, concurrency, max_seconds, keep]``,
``["rate", count, rate, max_seconds]``, ``["stop"]``. Every reply is compared with
:data:`EXPECTED`; a wrong or missing one counts as failed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

BODY = "b" * 100
EXPECTED = "Consumer processed: " + BODY
REPLY_TIMEOUT = 30.0
#: Most threads a thread-based client keeps (the highest concurrency measured is 256).
MAX_THREADS = 256


def result(sent: int, ok: int, failed: int, elapsed: float, latencies: list[float]) -> dict[str, Any]:
    return {"sent": sent, "ok": ok, "failed": failed, "elapsed": elapsed, "latencies": latencies}


class ThreadedDriver:
    """Workloads for a blocking ``call(body) -> reply``; each thread calls with its own client
    (the peers' clients are not thread-safe; ``call`` keeps one per thread). The threads live as
    long as the driver, so their clients connect once, in the warm-up, not in a measurement."""

    def __init__(self, call: Callable[[str], str]) -> None:
        self._call = call
        self._pool = concurrent.futures.ThreadPoolExecutor(MAX_THREADS)

    def _one(self) -> bool:
        try:
            return self._call(BODY) == EXPECTED
        except Exception as exc:  # a failed request is a count, not the end of the run
            print(f"request failed: {exc!r}", file=sys.stderr)
            return False

    def closed(self, count: int, concurrency: int, max_seconds: float, keep: bool = True) -> dict[str, Any]:
        lock = threading.Lock()
        state = {"sent": 0, "ok": 0, "failed": 0}
        latencies: list[float] = []
        started = time.monotonic()
        stop_at = started + max_seconds

        def drive() -> None:
            while True:
                with lock:
                    if state["sent"] >= count or time.monotonic() >= stop_at:
                        return
                    state["sent"] += 1
                begun = time.monotonic()
                good = self._one()
                took = time.monotonic() - begun
                with lock:
                    state["ok" if good else "failed"] += 1
                    if keep and good:
                        latencies.append(took)

        for future in [self._pool.submit(drive) for _ in range(min(concurrency, MAX_THREADS))]:
            future.result()
        return result(state["sent"], state["ok"], state["failed"], time.monotonic() - started, latencies)

    def rate(self, count: int, rate: float, max_seconds: float) -> dict[str, Any]:
        latencies: list[float] = []
        outcomes = {"ok": 0, "failed": 0}
        lock = threading.Lock()
        started = time.monotonic()

        def timed(scheduled: float) -> None:
            good = self._one()
            with lock:
                outcomes["ok" if good else "failed"] += 1
                if good:
                    latencies.append(time.monotonic() - scheduled)

        sent = 0
        pending = []
        while sent < count and time.monotonic() - started < max_seconds:
            scheduled = started + sent / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pending.append(self._pool.submit(timed, scheduled))
            sent += 1
        for future in pending:
            future.result()
        return result(sent, outcomes["ok"], outcomes["failed"], time.monotonic() - started, latencies)


class AsyncDriver:
    """Workloads for an ``async call(body) -> reply`` on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, call: Callable[[str], Awaitable[str]]) -> None:
        self._loop = loop
        self._call = call

    async def _one(self) -> bool:
        try:
            return await asyncio.wait_for(self._call(BODY), REPLY_TIMEOUT) == EXPECTED
        except Exception as exc:
            print(f"request failed: {exc!r}", file=sys.stderr)
            return False

    def closed(self, count: int, concurrency: int, max_seconds: float, keep: bool = True) -> dict[str, Any]:
        return self._loop.run_until_complete(self._closed(count, concurrency, max_seconds, keep))

    async def _closed(self, count: int, concurrency: int, max_seconds: float, keep: bool) -> dict[str, Any]:
        state = {"sent": 0, "ok": 0, "failed": 0}
        latencies: list[float] = []
        started = time.monotonic()

        async def drive() -> None:
            while state["sent"] < count and time.monotonic() - started < max_seconds:
                state["sent"] += 1
                begun = time.monotonic()
                good = await self._one()
                state["ok" if good else "failed"] += 1
                if keep and good:
                    latencies.append(time.monotonic() - begun)

        await asyncio.gather(*(drive() for _ in range(concurrency)))
        return result(state["sent"], state["ok"], state["failed"], time.monotonic() - started, latencies)

    def rate(self, count: int, rate: float, max_seconds: float) -> dict[str, Any]:
        return self._loop.run_until_complete(self._rate(count, rate, max_seconds))

    async def _rate(self, count: int, rate: float, max_seconds: float) -> dict[str, Any]:
        latencies: list[float] = []
        outcomes = {"ok": 0, "failed": 0}
        started = time.monotonic()

        async def timed(scheduled: float) -> None:
            good = await self._one()
            outcomes["ok" if good else "failed"] += 1
            if good:
                latencies.append(time.monotonic() - scheduled)

        tasks = []
        while len(tasks) < count and time.monotonic() - started < max_seconds:
            scheduled = started + len(tasks) / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(timed(scheduled)))
        await asyncio.gather(*tasks)
        return result(len(tasks), outcomes["ok"], outcomes["failed"], time.monotonic() - started, latencies)


def serve(driver: Any) -> None:
    """Say ready, then answer commands from stdin until ``["stop"]`` or end of input."""
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        kind = command[0]
        if kind == "stop":
            print(json.dumps({"stopped": True}), flush=True)
            return
        if kind in ("closed", "rate"):
            answer = getattr(driver, kind)(*command[1:])
        else:
            answer = {"error": f"unknown command {kind!r}"}
        print(json.dumps(answer), flush=True)


def ready_server() -> None:
    """A peer server says it consumes by printing this line (the harness waits for it)."""
    print(json.dumps({"ready": True}), flush=True)
