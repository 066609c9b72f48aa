"""One consumer daemon waiting on I/O: 500 coroutines on one thread against 8 worker threads.

Both handlers do the same one-second wait per request. The async service gets 2,000 requests with
``concurrency = 500``; the sync one, with 8 threads, needs ``n / 8`` seconds for ``n`` requests, so
it gets a sample of :data:`SYNC_SAMPLE` and its time is scaled to 2,000 (a thread pool's time
grows linearly with the requests in rounds of 8; the wait dominates). The ratio is asserted, and
the async daemon's thread count is sampled throughout and must equal its idle count.
"""

from __future__ import annotations

import time

from waiting import wait_for

REQUESTS = 2000
SYNC_SAMPLE = 96


def _run(daemon, producer, count: int, label: str) -> tuple[float, int, int]:
    """Send ``count`` requests, check every reply by body, return the seconds taken and the
    daemon's thread count before and (at most) during the run."""
    idle = daemon.resources()["threads"]
    started = time.monotonic()
    futures = {f"{label}-{i}".encode(): producer.submit(f"{label}-{i}".encode(), timeout=300) for i in range(count)}
    most = idle
    pending = set(futures)

    def done() -> bool:
        nonlocal most
        most = max(most, daemon.resources()["threads"])
        pending.difference_update([body for body in list(pending) if futures[body].done()])
        return not pending

    wait_for(done, 300, f"{count} {label} replies", interval=0.05)
    elapsed = time.monotonic() - started
    for body, future in futures.items():
        assert future.result() == b"Consumer processed: " + body
    return elapsed, idle, most


def test_async_handler_waits_on_500_requests_with_one_thread(make_config, consumer_process, start_producer):
    async_config = make_config(consumer={"handler": "burrow_test_async_handlers:sleep_one_second", "concurrency": 500},
                               producer={"max_in_flight": REQUESTS})
    daemon = consumer_process(async_config, name="async").start()
    daemon.wait_ready()
    producer = start_producer(async_config)
    assert producer.call(b"warm-up", timeout=30) == b"Consumer processed: warm-up"
    async_seconds, idle, most = _run(daemon, producer, REQUESTS, "async")
    print(f"async: {REQUESTS} requests in {async_seconds:.2f}s, threads idle {idle}, at most {most}")
    assert async_seconds < 10, f"{REQUESTS} requests took {async_seconds:.1f}s"
    assert most == idle, f"the daemon went from {idle} threads idle to {most} under load"
    assert daemon.stop() == 0

    sync_config = make_config(consumer={"handler": "burrow_test_async_handlers:sync_sleep_one_second", "concurrency": 8})
    daemon = consumer_process(sync_config, name="sync").start()
    daemon.wait_ready()
    producer = start_producer(sync_config)
    sample_seconds, _, _ = _run(daemon, producer, SYNC_SAMPLE, "sync")
    sync_seconds = sample_seconds * REQUESTS / SYNC_SAMPLE
    ratio = sync_seconds / async_seconds
    print(f"sync, 8 threads: {SYNC_SAMPLE} requests in {sample_seconds:.2f}s, scaled to {REQUESTS}: "
          f"{sync_seconds:.1f}s; {ratio:.1f}x the async time")
    assert ratio >= 25, f"the async handler was only {ratio:.1f}x faster"
