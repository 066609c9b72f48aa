"""``burrow.aio.Producer`` on a real broker: awaited calls checked per id, cancellation, many loops.

The tests drive their own loops with ``asyncio.run``; the consumer runs in-process.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

import burrow_test_async_handlers as handlers
from burrow import aio
from waiting import wait_for

TASKS = 100
CALLS_PER_TASK = 100


def test_ten_thousand_awaited_calls_from_100_tasks_each_reply_checked(make_config, start_consumer):
    config = make_config(consumer={"concurrency": 16})
    start_consumer(config)

    async def caller(producer: aio.Producer, task: int) -> list[tuple[bytes, bytes]]:
        pairs = []
        for call in range(CALLS_PER_TASK):
            body = f"t{task}-c{call}".encode()
            pairs.append((body, await producer.call(body, timeout=60)))
        return pairs

    async def main() -> tuple[list[list[tuple[bytes, bytes]]], aio.Producer]:
        async with aio.Producer(config) as producer:
            results = await asyncio.wait_for(asyncio.gather(*(caller(producer, t) for t in range(TASKS))), 300)
        return results, producer

    results, producer = asyncio.run(main())
    pairs = [pair for task in results for pair in task]
    assert len({body for body, _ in pairs}) == TASKS * CALLS_PER_TASK
    wrong = [(body, reply) for body, reply in pairs if reply != b"Consumer processed: " + body]
    assert not wrong, f"{len(wrong)} replies do not match their request, e.g. {wrong[:3]}"
    stats = producer.stats()
    assert (stats.answered, stats.duplicate_replies, stats.orphaned_replies) == (TASKS * CALLS_PER_TASK, 0, 0)


def test_cancelled_calls_free_their_slots_and_their_late_replies_are_dropped(make_config, start_consumer):
    """200 calls at the consumer; the 100 held 4 s are cancelled, the 100 held 1.5 s answered. Once
    those are answered (the cancelled ones' replies still 2.5 s away) nothing is in flight; the 100
    replies that still come are dropped and counted as late."""
    config = make_config(consumer={"handler": "burrow_test_async_handlers:held", "concurrency": 200})
    start_consumer(config)

    token = uuid.uuid4().hex[:8]
    bodies = [f"{4 if i < 100 else 1.5}:{token}-{i}".encode() for i in range(200)]

    def all_at_the_consumer() -> bool:
        with handlers.EVENTS_LOCK:
            return len({body for event, body in handlers.EVENTS if event == "started"} & set(bodies)) == 200

    async def main() -> aio.Producer:
        async with aio.Producer(config) as producer:
            tasks = [asyncio.create_task(producer.call(body, timeout=30)) for body in bodies]
            await asyncio.to_thread(wait_for, all_at_the_consumer, 10, "every request in the handler")
            for task in tasks[:100]:
                task.cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(result, asyncio.CancelledError) for result in done[:100])
            assert done[100:] == [b"Consumer processed: " + body for body in bodies[100:]]
            assert producer.in_flight == 0, f"{producer.in_flight} requests still hold a slot"
            stats = producer.stats()
            assert (stats.cancelled, stats.answered) == (100, 100)
            wait_for(lambda: producer.stats().duplicate_replies == 100, 10, "the cancelled requests' late replies")
        return producer

    producer = asyncio.run(main())
    assert producer.stats().orphaned_replies == 0


def test_one_producer_serves_several_running_loops(make_config, start_consumer, start_producer):
    """An aio producer sharing a threaded producer's engine, awaited from two loops in two threads
    at once while the threaded one is used directly."""
    config = make_config()
    start_consumer(config)
    engine = start_producer(config)
    shared = aio.Producer(engine=engine)
    replies: dict[str, list[bytes]] = {}

    def loop_thread(name: str) -> None:
        async def main() -> list[bytes]:
            return list(await asyncio.gather(*(shared.call(f"{name}-{i}".encode(), timeout=30) for i in range(50))))

        replies[name] = asyncio.run(main())

    threads = [threading.Thread(target=loop_thread, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    assert engine.call(b"threaded", timeout=30) == b"Consumer processed: threaded"
    for thread in threads:
        thread.join(60)
    for name in ("a", "b"):
        assert replies[name] == [f"Consumer processed: {name}-{i}".encode() for i in range(50)]


def test_aio_producer_needs_exactly_one_of_config_or_engine(make_config):
    with pytest.raises(TypeError, match="config or engine"):
        aio.Producer()
    with pytest.raises(TypeError, match="config or engine"):
        aio.Producer(make_config(), engine=object())  # type: ignore[arg-type]
