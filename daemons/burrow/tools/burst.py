"""Send many requests concurrently and summarise them: shared by ``burrow send`` and ``burrow call``.

:func:`run_burst` takes any ``send(body) -> bytes`` callable (an HTTP call to the producer's
socket, or ``Producer.call``), runs ``count`` of them on ``concurrency`` threads, draws a progress
bar on a terminal and returns a :class:`BurstResult` whose :meth:`~BurstResult.line` is the summary
both commands print::

    1000 requests, 0 failed, 812 req/s, p50 9.8 ms, p99 31.0 ms

The run is bounded in count and, with ``max_seconds``, in time: when the budget runs out the
remaining requests are not sent and the summary says how many were skipped.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

logger = logging.getLogger(__name__)

#: Seconds between progress bar redraws.
PROGRESS_INTERVAL = 0.2


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 for an empty list)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), int(fraction * len(sorted_values) + 0.999999)))
    return sorted_values[rank - 1]


@dataclasses.dataclass(slots=True)
class BurstResult:
    """What a burst did: counts, wall time, per-request latencies and error kinds."""

    requested: int
    sent: int = 0
    failed: int = 0
    elapsed: float = 0.0
    latencies: list[float] = dataclasses.field(default_factory=list)
    errors: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    @property
    def skipped(self) -> int:
        """Requests never sent because the time budget ran out."""
        return self.requested - self.sent

    @property
    def rate(self) -> float:
        """Finished requests per second of wall time."""
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        """``N requests, F failed, X req/s, p50 A ms, p99 B ms`` (+ skipped, + error kinds)."""
        ordered = sorted(self.latencies)
        line = (
            f"{self.sent} requests, {self.failed} failed, {self.rate:.0f} req/s, "
            f"p50 {percentile(ordered, 0.50) * 1000:.1f} ms, p99 {percentile(ordered, 0.99) * 1000:.1f} ms"
        )
        if self.skipped:
            line += f", {self.skipped} not sent (time limit)"
        if self.errors:
            line += " (" + ", ".join(f"{kind}: {n}" for kind, n in self.errors.most_common()) + ")"
        return line


class ProgressBar:
    """``[#########...........]  450/1000  45%  812 req/s  2 failed`` redrawn in place on a TTY.

    When ``stream`` is not a terminal (CI logs, pipes) it draws nothing, so logs stay readable.
    """

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._started = time.monotonic()

    def render(self, done: int, failed: int) -> str:
        """The bar's text for ``done`` of ``total`` requests."""
        fraction = done / self.total if self.total else 1.0
        filled = int(self.width * fraction)
        elapsed = time.monotonic() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        text = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {done:>{len(str(self.total))}}/{self.total} "
            f"{fraction * 100:3.0f}% {rate:6.0f} req/s"
        )
        return text + (f" {failed} failed" if failed else "")

    def update(self, done: int, failed: int) -> None:
        if self.enabled:
            self.stream.write("\r" + self.render(done, failed))
            self.stream.flush()

    def finish(self, done: int, failed: int) -> None:
        if self.enabled:
            self.stream.write("\r" + self.render(done, failed) + "\n")
            self.stream.flush()


def run_burst(
    send: Callable[[bytes], bytes],
    bodies: Sequence[bytes],
    *,
    count: int,
    concurrency: int,
    max_seconds: float | None = None,
    show_progress: bool = True,
    error_kind: Callable[[BaseException], str] = lambda exc: type(exc).__name__,
) -> BurstResult:
    """Send ``count`` requests (cycling through ``bodies``) from ``concurrency`` threads.

    ``show_progress`` draws a :class:`ProgressBar` on stderr (only when stderr is a terminal).
    A request that raises counts as failed, under ``error_kind(exc)`` (default: the exception's
    class name); the burst carries on.
    Returns once every thread has finished its current request.
    """
    if count < 0 or concurrency < 1 or not bodies:
        raise ValueError("count must be >= 0, concurrency >= 1 and there must be at least one body")
    progress = ProgressBar(count) if show_progress else None
    result = BurstResult(requested=count)
    lock = threading.Lock()
    next_index = 0
    started = time.monotonic()
    deadline = started + max_seconds if max_seconds is not None else None

    def worker() -> None:
        nonlocal next_index
        while True:
            with lock:
                if next_index >= count or (deadline is not None and time.monotonic() >= deadline):
                    return
                index = next_index
                next_index += 1
            body = bodies[index % len(bodies)]
            begin = time.monotonic()
            try:
                send(body)
            except Exception as exc:  # any failure is one failed request, and the burst goes on
                with lock:
                    result.sent += 1
                    result.failed += 1
                    result.errors[error_kind(exc)] += 1
                logger.debug("Request %d failed: %s", index, exc)
                continue
            latency = time.monotonic() - begin
            with lock:
                result.sent += 1
                result.latencies.append(latency)

    threads = [
        threading.Thread(target=worker, name=f"burrow-burst-{n}", daemon=True) for n in range(min(concurrency, max(count, 1)))
    ]
    for thread in threads:
        thread.start()
    while threads:
        if progress is not None:
            with lock:
                progress.update(result.sent, result.failed)
        threads[0].join(PROGRESS_INTERVAL)
        threads = [thread for thread in threads if thread.is_alive()]
    result.elapsed = time.monotonic() - started
    if progress is not None:
        progress.finish(result.sent, result.failed)
    return result


__all__ = ["BurstResult", "ProgressBar", "percentile", "run_burst"]
