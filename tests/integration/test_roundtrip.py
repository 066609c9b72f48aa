"""Request/response on a real broker: round trips, concurrency, errors, timeouts, modes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pika
import pytest

from burrow import Backpressure, RemoteError, RequestTimeout, UnroutableError
from burrow.handlers import load_handler
from burrow.topology import reply_queue_name

from broker_helpers import queue_depth
from waiting import wait_for


def test_round_trip(make_config, start_consumer, start_producer):
    config = make_config()
    start_consumer(config)
    producer = start_producer(config)
    assert producer.call(b"hello", timeout=10) == b"Consumer processed: hello"
    future = producer.submit(b"again")
    assert future.result(timeout=10) == b"Consumer processed: again"
    assert future.correlation_id


def test_public_api_context_manager(make_config, start_consumer):
    from burrow import Producer

    config = make_config()
    start_consumer(config)
    with Producer(config) as producer:
        assert producer.submit(b"hello").result(timeout=5) == b"Consumer processed: hello"
        assert producer.call(b"x", timeout=5) == b"Consumer processed: x"


def test_eight_threads_of_500_concurrent_requests_all_matched(make_config, start_consumer, start_producer):
    config = make_config(consumer={"concurrency": 8})
    start_consumer(config)
    producer = start_producer(config)

    def one_thread(thread_no: int) -> list[tuple[bytes, bytes]]:
        futures = [(f"t{thread_no}-r{i}".encode(), producer.submit(f"t{thread_no}-r{i}".encode())) for i in range(500)]
        return [(body, future.result(timeout=60)) for body, future in futures]

    with ThreadPoolExecutor(8) as pool:
        results = [pair for chunk in pool.map(one_thread, range(8)) for pair in chunk]
    assert len(results) == 4000
    mismatched = [(body, reply) for body, reply in results if reply != b"Consumer processed: " + body]
    assert mismatched == []
    assert producer.in_flight == 0


def test_consumer_concurrency_overlaps_slow_handlers(make_config, start_consumer, start_producer):
    """``concurrency = 8`` runs exactly 8 handlers at once: each handler waits at a barrier until
    7 others are running too (with fewer workers the barrier breaks and the requests fail), and no
    more than 8 ever run together."""
    workers, count = 8, 16
    barrier = threading.Barrier(workers, timeout=20)
    lock = threading.Lock()
    running = peak = 0

    def handler(body: bytes, _context: object) -> bytes:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            barrier.wait()
        finally:
            with lock:
                running -= 1
        return b"Consumer processed: " + body

    config = make_config(consumer={"concurrency": workers})
    start_consumer(config, handler=handler)
    producer = start_producer(config)
    futures = [producer.submit(f"overlap-{i}".encode(), timeout=60) for i in range(count)]
    assert [future.result(timeout=60) for future in futures] == [f"Consumer processed: overlap-{i}".encode() for i in range(count)]
    assert peak == workers


def test_handler_error_is_a_remote_error_without_traceback(make_config, start_consumer, start_producer):
    config = make_config(consumer={"handler": "burrow_test_handlers:fail"})
    start_consumer(config)
    producer = start_producer(config)
    with pytest.raises(RemoteError) as caught:
        producer.call(b"boom", timeout=10)
    assert caught.value.type_name == "ValueError"
    assert caught.value.message == "cannot handle 'boom'"
    assert caught.value.remote_traceback is None


def test_handler_returning_non_bytes_is_a_remote_type_error(make_config, start_consumer, start_producer):
    config = make_config(consumer={"handler": "burrow_test_handlers:returns_text"})
    start_consumer(config)
    producer = start_producer(config)
    with pytest.raises(RemoteError, match="TypeError: handler returned str"):
        producer.call(b"x", timeout=10)


def test_traceback_sent_only_when_configured(make_config, start_consumer, start_producer):
    config = make_config(consumer={"handler": "burrow_test_handlers:fail", "include_traceback": True})
    start_consumer(config)
    producer = start_producer(config)
    with pytest.raises(RemoteError) as caught:
        producer.call(b"boom", timeout=10)
    assert "Traceback" in caught.value.remote_traceback


def test_timeout_raises_and_stale_request_is_never_processed(make_config, start_consumer, start_producer, amqp):
    import burrow_test_handlers as handlers

    config = make_config(consumer={"handler": "burrow_test_handlers:record"})
    producer = start_producer(config)
    stale = b"stale-" + str(time.time()).encode()
    with pytest.raises(RequestTimeout):
        producer.call(stale, timeout=0.5)
    # The consumer starts only now; the stale request must not reach its handler.
    start_consumer(config)
    assert producer.call(b"fresh", timeout=10) == b"Consumer processed: fresh"
    wait_for(lambda: queue_depth(amqp, config.topology.request_queue) == 0, 10, "request queue drained")
    assert stale not in handlers.SEEN
    assert b"fresh" in handlers.SEEN
    wait_for(lambda: queue_depth(amqp, config.topology.dead_letter_queue) == 1, 10, "stale request dead-lettered")


def test_late_reply_after_timeout_is_dropped(make_config, start_consumer, start_producer):
    config = make_config(consumer={"handler": "burrow_test_handlers:slow"})
    start_consumer(config)
    producer = start_producer(config)
    with pytest.raises(RequestTimeout):
        producer.call(b"1.0:late", timeout=0.3)
    wait_for(lambda: producer.stats().duplicate_replies == 1, 10, "late reply dropped and counted")
    assert producer.call(b"0:after", timeout=10) == b"Consumer processed: 0:after"


def test_direct_reply_to_mode(make_config, start_consumer, start_producer, amqp):
    config = make_config(producer={"reply_mode": "direct"})
    start_consumer(config)
    producer = start_producer(config)
    futures = {i: producer.submit(f"d{i}".encode()) for i in range(500)}
    assert all(f.result(timeout=30) == f"Consumer processed: d{i}".encode() for i, f in futures.items())
    # No durable reply queue exists in direct mode.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        amqp.queue_declare(queue=reply_queue_name(config.topology, producer.instance_id, config.rabbitmq), passive=True)


def test_unroutable_request_fails_with_clear_error(make_config, start_producer, amqp):
    config = make_config()
    producer = start_producer(config)
    topology = config.topology
    amqp.queue_unbind(queue=topology.request_queue, exchange=topology.request_exchange, routing_key=topology.request_queue)
    with pytest.raises(UnroutableError, match="unroutable"):
        producer.call(b"nowhere", timeout=10)


def test_in_flight_window_blocks_or_raises(make_config, start_producer):
    config = make_config(producer={"max_in_flight": 2})
    producer = start_producer(config)
    first = producer.submit(b"a", timeout=1.0)
    producer.submit(b"b", timeout=1.0)
    with pytest.raises(Backpressure):
        producer.submit(b"c", block=False)
    unblocked = threading.Event()

    def blocked_submit() -> None:
        producer.submit(b"d", timeout=1)
        unblocked.set()

    thread = threading.Thread(target=blocked_submit, daemon=True)
    thread.start()
    assert not unblocked.wait(0.3), "submit should block while the window is full"
    # Nothing consumes: the first two time out after 1 s, which frees the window.
    assert unblocked.wait(5)
    with pytest.raises(RequestTimeout):
        first.result()


def test_handler_longer_than_three_heartbeats_keeps_the_connection(make_config, start_consumer, start_producer):
    config = make_config(consumer={"handler": "burrow_test_handlers:slow"}, rabbitmq={"heartbeat": 1})
    consumer = start_consumer(config)
    producer = start_producer(config)
    assert producer.call(b"4:long", timeout=20) == b"Consumer processed: 4:long"
    # The ack follows the reply's confirm, which can land just after the caller has its reply.
    wait_for(lambda: consumer.stats().processed == 1, 5, "the request acked")
    assert consumer.reconnects == 0 and producer.reconnects == 0


def test_handler_load_errors_are_named():
    from burrow.errors import HandlerLoadError

    for spec, message in [
        ("nocolon", "module:function"),
        ("no_such_module_xyz:f", "cannot import"),
        ("burrow.handlers:missing", "no attribute"),
        ("burrow.handlers:logger", "not callable"),
    ]:
        with pytest.raises(HandlerLoadError, match=message):
            load_handler(spec)
