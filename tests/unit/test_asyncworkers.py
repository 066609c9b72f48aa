"""The async pool and its step timer without a broker: how many run at once, what passes through."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import pytest

from burrow import eventloop
from burrow.asyncworkers import AsyncHandlerPool
from burrow.handlers import RequestContext, is_coroutine_handler, load_handler
from burrow.protocol import Outcome


@dataclass(eq=False)
class Job:
    body: bytes
    context: RequestContext = field(default_factory=lambda: RequestContext("cid", None, False))
    outcome: Outcome | None = None


def run_timed(coro, threshold: float = 0.05) -> tuple[object, list[float]]:
    held: list[float] = []

    async def main() -> object:
        return await eventloop.TimedSteps(coro, threshold, held.append)

    return asyncio.run(main()), held


def test_timed_steps_pass_the_result_through_and_time_only_slow_steps():
    async def work() -> str:
        await asyncio.sleep(0.01)
        time.sleep(0.12)  # the mistake: a blocking call between two awaits
        await asyncio.sleep(0)
        return "done"

    result, held = run_timed(work())
    assert result == "done"
    assert len(held) == 1 and 0.12 <= held[0] < 1.0


def test_timed_steps_pass_exceptions_and_cancellation_to_and_from_the_coroutine():
    async def boom() -> None:
        await asyncio.sleep(0)
        raise KeyError("k")

    with pytest.raises(KeyError):
        run_timed(boom())
    seen: list[str] = []

    async def waits() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def main() -> None:
        task = asyncio.create_task(_await(eventloop.TimedSteps(waits(), 1.0, lambda _held: None)))
        await asyncio.sleep(0)  # one turn: the task is now awaiting inside waits()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen == ["cancelled"]


async def _await(awaitable):
    return await awaitable


def test_pool_awaits_at_most_workers_at_once_and_answers_every_job():
    """20 jobs, 3 at once: exactly 3 start and wait; after a resize to 5, 5 do; then all finish."""
    running = 0
    most = 0
    reached = {3: threading.Event(), 5: threading.Event()}
    release = asyncio.Event()
    done: list[Job] = []
    all_done = threading.Event()

    async def handler(body: bytes, _context: RequestContext) -> bytes:
        nonlocal running, most
        running += 1
        most = max(most, running)
        if running in reached:
            reached[running].set()
        await release.wait()
        running -= 1
        return body.upper()

    def on_done(job: Job) -> None:
        done.append(job)
        if len(done) == 20:
            all_done.set()

    loop = eventloop.acquire()
    pool = AsyncHandlerPool(handler, "t:handler", 3, include_traceback=False, on_done=on_done, blocking_threshold=1.0)
    try:
        jobs = [Job(f"j{i}".encode()) for i in range(20)]
        for job in jobs:
            pool.submit(job)
        assert reached[3].wait(5)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(5)  # every job admitted by now
        assert most == 3
        pool.resize(5)
        assert reached[5].wait(5)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(5)
        assert most == 5
        loop.call_soon_threadsafe(release.set)
        assert all_done.wait(10)
    finally:
        pool.shutdown()
        eventloop.release()
    assert sorted(job.outcome.body for job in jobs) == sorted(f"J{i}".encode() for i in range(20))


def test_load_handler_keeps_a_one_argument_coroutine_a_coroutine_function():
    handler = load_handler("burrow_test_async_handlers:sleep_one_second")
    assert is_coroutine_handler(handler)
    assert not is_coroutine_handler(load_handler("burrow_test_async_handlers:sync_sleep_one_second"))
