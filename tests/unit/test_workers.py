"""HandlerPool: the handler's return value or exception becomes an Outcome, handed on as data."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

from burrow.handlers import RequestContext
from burrow.protocol import Outcome
from burrow.workers import HandlerPool


@dataclass(eq=False)
class Job:
    body: bytes
    context: RequestContext
    outcome: Outcome | None = None


def job(body: bytes) -> Job:
    return Job(body, RequestContext(correlation_id=f"c-{body!r}", message_id=None, redelivered=False))


def handler(body: bytes, context: RequestContext) -> bytes | bytearray | str:
    if body == b"raise":
        raise KeyError("missing")
    if body == b"text":
        return "not bytes"
    if body == b"array":
        return bytearray(b"arr")
    return b"ok " + body + b" " + threading.current_thread().name.encode()


def run(pool: HandlerPool[Job], done: "queue.Queue[Job]", *jobs: Job) -> dict[bytes, Outcome]:
    for item in jobs:
        pool.submit(item)
    outcomes = {}
    for _ in jobs:
        finished = done.get(timeout=5)
        assert finished.outcome is not None
        outcomes[finished.body] = finished.outcome
    return outcomes


def test_outcomes_of_a_reply_an_exception_and_a_wrong_return_type() -> None:
    done: queue.Queue[Job] = queue.Queue()
    pool: HandlerPool[Job] = HandlerPool(handler, "tests:handler", 2, include_traceback=True, on_done=done.put)
    try:
        outcomes = run(pool, done, job(b"a"), job(b"raise"), job(b"text"), job(b"array"))
    finally:
        pool.shutdown()
    assert outcomes[b"a"].ok and outcomes[b"a"].body.startswith(b"ok a burrow-handler")
    assert outcomes[b"array"] == Outcome(b"arr")
    failed = outcomes[b"raise"]
    assert (failed.ok, failed.error_type, failed.body) == (False, "KeyError", b"'missing'")
    assert failed.traceback is not None and "KeyError" in failed.traceback
    wrong = outcomes[b"text"]
    assert (wrong.error_type, wrong.body) == ("TypeError", b"handler returned str, expected bytes")


def test_resize_keeps_serving_with_the_new_count() -> None:
    done: queue.Queue[Job] = queue.Queue()
    pool: HandlerPool[Job] = HandlerPool(handler, "tests:handler", 1, include_traceback=False, on_done=done.put)
    try:
        pool.resize(3)
        assert pool.workers == 3
        outcomes = run(pool, done, *(job(str(n).encode()) for n in range(6)))
    finally:
        pool.shutdown()
    assert all(outcome.ok for outcome in outcomes.values()) and len(outcomes) == 6
