"""``async def`` handlers on a real broker: the guarantees of the thread pool, on one event loop.

Each test names a guarantee (error replies, redelivery flag, deadline, drain on SIGTERM, a handler
that blocks the loop) and fails when it breaks; the throughput test is in
``test_async_throughput.py``.
"""

from __future__ import annotations

import logging
import signal
import time
import uuid

import pika
import pytest

import burrow_test_async_handlers as handlers
from broker_helpers import next_message, queue_depth, reply_queue
from burrow.errors import Rejected, RemoteError
from burrow.protocol import HEADER_DEADLINE, REJECT_STALE, decode_reply
from waiting import wait_for


def test_async_handler_exception_becomes_remote_error(make_config, start_consumer, start_producer):
    config = make_config(consumer={"handler": "burrow_test_async_handlers:fail"})
    start_consumer(config)
    producer = start_producer(config)
    with pytest.raises(RemoteError) as caught:
        producer.call(b"boom", timeout=10)
    assert (caught.value.type_name, caught.value.message) == ("ValueError", "cannot handle 'boom'")
    with pytest.raises(RemoteError):  # the loop carries on after a handler raised
        producer.call(b"again", timeout=10)


def test_async_handler_sees_the_redelivered_flag(make_config, start_consumer, start_producer, amqp):
    """A request the broker hands out again (here: taken and nacked back before any consumer runs)
    reaches the coroutine with ``context.redelivered`` set; a fresh one without."""
    config = make_config(consumer={"handler": "burrow_test_async_handlers:redelivered"})
    producer = start_producer(config)
    first = producer.submit(b"first", timeout=30)
    wait_for(lambda: queue_depth(amqp, config.topology.request_queue) == 1, 10, "the request queued")
    method, _properties, _body = amqp.basic_get(config.topology.request_queue)
    amqp.basic_nack(method.delivery_tag, requeue=True)
    start_consumer(config)
    assert first.result(timeout=30) == b"redelivered=True"
    assert producer.call(b"second", timeout=30) == b"redelivered=False"


def test_coroutine_running_at_its_deadline_is_cancelled_and_dead_lettered_stale(make_config, start_consumer, amqp, caplog):
    """A request with 1 s left whose handler would await 30 s: at the deadline the coroutine is
    cancelled (it sees ``CancelledError``), the cancellation logged, the caller told ``stale``,
    and the request is in the dead-letter queue, all well before the handler would have ended; the
    consumer's own stats count it as stale and dead-lettered, as they do a request that arrived stale."""
    config = make_config(consumer={"handler": "burrow_test_async_handlers:held"})
    consumer = start_consumer(config)
    replies = reply_queue(amqp, config, "deadline")
    body = f"30:{uuid.uuid4().hex}".encode()
    correlation_id = f"deadline-{uuid.uuid4().hex[:8]}"
    sent = time.monotonic()
    amqp.basic_publish(config.topology.request_exchange, config.topology.request_queue, body, pika.BasicProperties(
        reply_to=replies, correlation_id=correlation_id, content_type="application/octet-stream",
        headers={HEADER_DEADLINE: int((time.time() + 1.0) * 1000)}))
    props, reply = next_message(amqp, replies, 10, "the stale notice")
    told_after = time.monotonic() - sent
    ok, error = decode_reply(props, reply)
    assert not ok and type(error) is Rejected and error.reason == REJECT_STALE, (ok, error)
    assert props.correlation_id == correlation_id
    assert 0.9 < told_after < 5, f"caller told after {told_after:.1f}s, not at the 1 s deadline"
    assert ("cancelled", body) in handlers.EVENTS and ("finished", body) not in handlers.EVENTS
    wait_for(lambda: queue_depth(amqp, config.topology.dead_letter_queue) == 1, 10, "the request dead-lettered")
    method, dead_props, _ = amqp.basic_get(config.topology.dead_letter_queue, auto_ack=True)
    assert dead_props.correlation_id == correlation_id
    cancelled = [r for r in caplog.records if "still running at its deadline" in r.getMessage()]
    assert cancelled and getattr(cancelled[0], "CORRELATION_ID") == correlation_id, "the cancellation is not logged"
    wait_for(lambda: (consumer.stats().stale, consumer.stats().dead_lettered) == (1, 1), 10,
             f"stats() counting the cancelled request as stale and dead-lettered: {consumer.stats()}")


def test_blocking_coroutine_is_logged_with_its_name_and_the_daemon_carries_on(make_config, start_consumer,
                                                                               start_producer, caplog):
    """``time.sleep(0.6)`` inside ``async def``: logged with the handler's name and how long it held
    the loop (a 0.15 s one, under ``blocking_warning``, is not); the I/O thread's periodic work
    (the systemd watchdog's ping) keeps its pace meanwhile, and the next request is answered."""
    handler = "burrow_test_async_handlers:blocking"
    config = make_config(consumer={"handler": handler, "blocking_warning": 0.3})
    consumer = start_consumer(config)
    producer = start_producer(config)
    ticks: list[float] = []
    consumer.add_periodic(0.05, lambda: ticks.append(time.monotonic()))
    caplog.set_level(logging.WARNING, logger="burrow.asyncworkers")
    assert producer.call(b"block:0.15", timeout=10) == b"Consumer processed: block:0.15"
    started = time.monotonic()
    assert producer.call(b"block:0.6", timeout=10) == b"Consumer processed: block:0.6"
    ended = time.monotonic()
    assert producer.call(b"after", timeout=10) == b"Consumer processed: after"
    blocked = [r for r in caplog.records if "blocked the event loop" in r.getMessage()]
    assert len(blocked) == 1, [r.getMessage() for r in caplog.records]
    assert handler in blocked[0].getMessage()
    assert 0.55 <= float(getattr(blocked[0], "BLOCKED_SECONDS")) < 2.0
    during = [t for t in ticks if started <= t <= ended]
    gaps = [b - a for a, b in zip(during, during[1:])]
    assert len(during) >= 8 and max(gaps) < 0.3, f"the I/O thread stalled: {len(during)} ticks, gaps {gaps}"


def test_sigterm_drains_awaiting_coroutines(make_config, consumer_process, start_producer, tmp_path, monkeypatch):
    """SIGTERM while 20 coroutines await 2 s each: the daemon stops taking requests, lets every one
    finish and answers it, then exits 0."""
    record = tmp_path / "record.txt"
    monkeypatch.setenv("BURROW_TEST_RECORD", str(record))
    config = make_config(consumer={"handler": "burrow_test_async_handlers:held", "concurrency": 50,
                                   "shutdown_timeout": 20})
    daemon = consumer_process(config).start()
    daemon.wait_ready()
    producer = start_producer(config)
    bodies = [f"2:{i}".encode() for i in range(20)]
    futures = {body: producer.submit(body, timeout=30) for body in bodies}
    started = lambda: record.read_text().count("started ") if record.exists() else 0  # noqa: E731
    wait_for(lambda: started() == len(bodies), 10, "every request awaiting in the handler")
    daemon.process.send_signal(signal.SIGTERM)
    for body, future in futures.items():
        assert future.result(timeout=30) == b"Consumer processed: " + body
    assert daemon.process.wait(30) == 0, daemon.log()
    lines = record.read_text().splitlines()
    assert sum(line.startswith("finished ") for line in lines) == len(bodies)
    assert not any(line.startswith("cancelled ") for line in lines)


def test_one_daemon_serves_an_async_and_a_sync_service_side_by_side(make_config, start_consumer, start_producer):
    """The pool is chosen per service: the async one on the event loop, the sync one in threads,
    both answering at once (a second of waiting each, 20 requests apiece, in well under 20 s)."""
    config = make_config(services={"waits": "burrow_test_async_handlers:sleep_one_second",
                                   "threads": "burrow_test_async_handlers:sync_sleep_one_second"},
                         consumer={"concurrency": 20})
    consumer = start_consumer(config)
    kinds = {service.name: type(service.workers).__name__ for service in consumer._services}
    assert kinds == {"waits": "AsyncHandlerPool", "threads": "HandlerPool"}
    producer = start_producer(config)
    started = time.monotonic()
    futures = {(service, i): producer.submit(f"{service}-{i}".encode(), service=service, timeout=30)
               for service in ("waits", "threads") for i in range(20)}
    for (service, i), future in futures.items():
        assert future.result(timeout=30) == f"Consumer processed: {service}-{i}".encode()
    assert time.monotonic() - started < 5


def test_sigterm_cancels_coroutines_still_awaiting_at_shutdown_timeout(make_config, consumer_process, start_producer,
                                                                       amqp, tmp_path, monkeypatch):
    """``shutdown_timeout = 1`` with 5 coroutines awaiting 60 s: the daemon exits 0 within a few
    seconds, having cancelled them (logged), and their requests are back in the queue, unanswered."""
    record = tmp_path / "record.txt"
    monkeypatch.setenv("BURROW_TEST_RECORD", str(record))
    config = make_config(consumer={"handler": "burrow_test_async_handlers:held", "shutdown_timeout": 1})
    daemon = consumer_process(config).start()
    daemon.wait_ready()
    producer = start_producer(config)
    futures = [producer.submit(f"60:{i}".encode(), timeout=120) for i in range(5)]
    wait_for(lambda: record.exists() and record.read_text().count("started ") == 5, 10, "five coroutines awaiting")
    stopping = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(30) == 0, daemon.log()
    assert time.monotonic() - stopping < 10
    assert "Cancelling 5 running handler" in daemon.log()
    assert record.read_text().count("cancelled ") == 5
    wait_for(lambda: queue_depth(amqp, config.topology.request_queue) == 5, 10, "the five requests back in the queue")
    assert not any(future.done() for future in futures)
