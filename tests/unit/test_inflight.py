"""InFlight: the producer's bounded table of requests, each taken out exactly once; resolve: each
outcome counted once, a timeout the broker never confirmed apart."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from burrow.errors import RequestTimeout
from burrow.inflight import InFlight, Request, resolve
from burrow.stats import ProducerStats
from burrow.protocol import HEADER_DEADLINE, HEADER_KEY


def test_a_new_request_knows_its_ids_and_deadline() -> None:
    before = time.time()
    request = Request.create("p-1", bytearray(b"body"), 2.0, {"h": 1})
    assert request.body == b"body" and type(request.body) is bytes
    assert request.future.correlation_id == request.future.message_id == "p-1"
    assert abs(request.deadline - request.submitted - 2.0) < 1e-6
    assert before + 2.0 <= request.wall_deadline <= time.time() + 2.0
    assert request.headers == {"h": 1, HEADER_DEADLINE: int(request.wall_deadline * 1000), HEADER_KEY: "p-1",
                               "traceparent": request.headers["traceparent"]}
    assert Request.create("p-2", b"", 2.0, None, "hot", "customer-7").headers[HEADER_KEY] == "customer-7"


def test_slots_bound_the_requests_and_come_back_when_one_is_taken() -> None:
    table = InFlight(2)
    first, second = Request.create("a", b"", 5, None), Request.create("b", b"", 5, None)
    for request in (first, second):
        assert table.reserve(block=False)
        table.add(request)
    assert not table.reserve(block=False)
    assert table.take("a") is first
    assert table.take("a") is None  # exactly once
    assert table.reserve(block=False)
    table.unreserve()
    assert len(table) == 1 and table.added == 2


def test_get_and_snapshot_do_not_remove() -> None:
    table = InFlight(4)
    requests = [Request.create(name, b"", 5, None) for name in ("a", "b", "c")]
    for request in requests:
        table.reserve(block=False)
        table.add(request)
    assert table.get("b") is requests[1] and table.get(None) is None and table.get("z") is None
    assert table.snapshot() == requests
    assert len(table) == 3


def test_wait_empty_returns_when_the_last_request_is_taken() -> None:
    table = InFlight(1)
    table.reserve(block=False)
    table.add(Request.create("a", b"", 5, None))
    taker = threading.Timer(0.05, lambda: table.take("a"))
    taker.start()
    table.wait_empty(time.monotonic() + 5, lambda: True)
    assert len(table) == 0
    taker.join()


def test_wait_empty_gives_up_at_the_deadline_or_when_the_io_thread_is_gone() -> None:
    table = InFlight(1)
    table.reserve(block=False)
    table.add(Request.create("a", b"", 5, None))
    started = time.monotonic()
    table.wait_empty(started + 0.05, lambda: True)
    table.wait_empty(started + 60, lambda: False)
    assert len(table) == 1 and time.monotonic() - started < 5


def test_a_timeout_the_broker_never_confirmed_is_counted_and_logged_by_id(caplog: pytest.LogCaptureFixture) -> None:
    stats = ProducerStats()
    unconfirmed, confirmed = Request.create("p-1", b"", 5, None), Request.create("p-2", b"", 5, None)
    with caplog.at_level(logging.DEBUG, logger="burrow.inflight"):
        resolve(unconfirmed, stats, error=RequestTimeout("late", confirmed=False))
        resolve(confirmed, stats, error=RequestTimeout("late", confirmed=True))
    assert (stats.timeouts, stats.unconfirmed_timeouts) == (2, 1)
    assert unconfirmed.future.exception().confirmed is False  # type: ignore[union-attr]
    ((record,),) = [[r for r in caplog.records if r.name == "burrow.inflight"]]
    assert (record.levelno, record.getMessage()) == (logging.DEBUG, "Request timed out before the broker confirmed it")
    assert getattr(record, "CORRELATION_ID") == "p-1"


def test_a_cancelled_request_counts_as_cancelled_only() -> None:
    stats = ProducerStats()
    request = Request.create("p-1", b"", 5, None)
    request.future.cancel()
    resolve(request, stats, error=RequestTimeout("late", confirmed=False))
    assert (stats.cancelled, stats.timeouts, stats.unconfirmed_timeouts) == (1, 0, 0)
