"""burrow.tools.burst: counts, failures, the summary line and the time budget of a burst."""

from __future__ import annotations

import io
import threading
import time

import pytest

from burrow.tools.burst import BurstResult, ProgressBar, percentile, run_burst


def test_every_request_sent_once_across_threads() -> None:
    seen: list[bytes] = []
    lock = threading.Lock()
    threads: set[str] = set()

    def send(body: bytes) -> bytes:
        with lock:
            seen.append(body)
            threads.add(threading.current_thread().name)
        time.sleep(0.001)  # long enough for the workers to overlap
        return body

    result = run_burst(send, [b"a", b"b", b"c"], count=300, concurrency=4, show_progress=False)
    assert (result.sent, result.failed, result.skipped) == (300, 0, 0)
    assert sorted(seen) == sorted([b"a", b"b", b"c"] * 100)
    assert len(result.latencies) == 300
    assert len(threads) == 4


def test_failures_are_counted_by_kind() -> None:
    def send(body: bytes) -> bytes:
        if body == b"bad":
            raise TimeoutError("slow")
        return body

    result = run_burst(
        send, [b"ok", b"bad"], count=10, concurrency=2, show_progress=False, error_kind=lambda exc: "timeout"
    )
    assert (result.sent, result.failed) == (10, 5)
    assert result.errors == {"timeout": 5}
    assert result.line().startswith("10 requests, 5 failed, ")
    assert result.line().endswith("(timeout: 5)")


def test_time_budget_stops_sending() -> None:
    def slow(body: bytes) -> bytes:
        time.sleep(0.05)  # a slow request, so the budget runs out long before the count
        return body

    result = run_burst(slow, [b"x"], count=10_000, concurrency=2, max_seconds=0.2, show_progress=False)
    assert 0 < result.sent < 10_000
    assert result.skipped == 10_000 - result.sent
    assert "not sent (time limit)" in result.line()


def test_summary_line_format() -> None:
    result = BurstResult(requested=4, sent=4, elapsed=2.0, latencies=[0.001, 0.002, 0.003, 0.1])
    assert result.line() == "4 requests, 0 failed, 2 req/s, p50 2.0 ms, p99 100.0 ms"


@pytest.mark.parametrize(("fraction", "expected"), [(0.5, 50.0), (0.99, 99.0), (1.0, 100.0), (0.0, 1.0)])
def test_percentile_nearest_rank(fraction: float, expected: float) -> None:
    assert percentile([float(n) for n in range(1, 101)], fraction) == expected


def test_progress_bar_only_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    pipe, terminal = io.StringIO(), Terminal()
    ProgressBar(10, stream=pipe).update(5, 0)
    bar = ProgressBar(10, stream=terminal, width=10)
    bar.update(5, 1)
    bar.finish(10, 1)
    assert pipe.getvalue() == ""
    assert "[#####.....]  5/10  50%" in terminal.getvalue()
    assert terminal.getvalue().endswith("1 failed\n")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        run_burst(lambda body: body, [], count=1, concurrency=1)
    with pytest.raises(ValueError):
        run_burst(lambda body: body, [b"x"], count=1, concurrency=0)
