"""The async-vs-sync handler row of ``make bench`` (issue 25): what the report makes of its raw runs."""

from __future__ import annotations

import asyncio

from benchmarks import asyncbench, handlers


def run(ok: int, elapsed: float, consumer_ms: float, failed: int = 0) -> dict:
    return {"ok": ok, "elapsed": elapsed, "failed": failed, "cpu_ms_per_request": {"consumer": consumer_ms}}


def test_each_handler_row_is_its_median_rate_and_the_ratio_is_async_over_sync() -> None:
    summary = asyncbench.summarise({
        asyncbench.ASYNC_HANDLER: [run(6000, 2.0, 0.5), run(9000, 2.0, 0.7), run(8000, 2.0, 0.6)],
        asyncbench.SYNC_HANDLER: [run(1500, 2.0, 0.2, failed=1), run(1600, 2.0, 0.3)],
    })
    assert summary["systems"][asyncbench.ASYNC_HANDLER] == {"median_rps": 4000, "failed": 0, "consumer_cpu_ms": 0.6}
    assert summary["systems"][asyncbench.SYNC_HANDLER]["median_rps"] == 775
    assert summary["systems"][asyncbench.SYNC_HANDLER]["failed"] == 1
    assert summary["ratio"] == 4000 / 775
    lines = asyncbench.markdown_lines({"async_handlers": summary})
    assert "| async-handler | 4000 | 0 | 0.600 |" in lines
    assert "Async handler / sync handler throughput: 5.2x." in lines


def test_a_run_without_the_sync_row_prints_the_ratio_as_n_a_and_a_run_without_both_prints_nothing() -> None:
    summary = asyncbench.summarise({asyncbench.ASYNC_HANDLER: [run(100, 1.0, 0.5)], asyncbench.SYNC_HANDLER: []})
    assert summary["ratio"] is None
    assert "Async handler / sync handler throughput: n/a." in asyncbench.markdown_lines({"async_handlers": summary})
    assert asyncbench.summarise(None) is None
    assert asyncbench.markdown_lines({"async_handlers": None}) == []


def test_both_handlers_do_the_same_work_and_answer_like_echo() -> None:
    assert asyncio.run(handlers.sleep_10ms(b"x")) == handlers.sync_sleep_10ms(b"x") == b"Consumer processed: x"
