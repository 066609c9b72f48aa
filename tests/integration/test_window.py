"""The consumer's request window: how many requests it holds unacked, after start, reload and crashes."""

from __future__ import annotations

import threading
import time

import pika

from burrow.handlers import RequestContext

from broker_helpers import queue_depth
from waiting import wait_for


class Gate:
    """A handler that holds every request whose body starts with ``b"hold"`` until released,
    and records how each request ran: (body, redelivered, handlers running when it started)."""

    def __init__(self, work_seconds: float = 0.0) -> None:
        self.open = threading.Event()
        self.work_seconds = work_seconds
        self._lock = threading.Lock()
        self._running = 0
        self.runs: list[tuple[bytes, bool, int]] = []

    def __call__(self, body: bytes, context: RequestContext) -> bytes:
        with self._lock:
            self._running += 1
            self.runs.append((body, context.redelivered, self._running))
        try:
            if body.startswith(b"hold"):
                self.open.wait(60)
            time.sleep(self.work_seconds)
            return b"Consumer processed: " + body
        finally:
            with self._lock:
                self._running -= 1


def test_window_holds_four_requests_per_worker_and_follows_a_concurrency_change(make_config, start_consumer, start_producer, amqp):
    gate = Gate()
    config = make_config(consumer={"concurrency": 2})
    consumer = start_consumer(config, handler=gate)
    producer = start_producer(config)
    try:
        # The first fresh request opens the window; it is answered at once, so it holds no slot.
        assert producer.call(b"first", timeout=10) == b"Consumer processed: first"
        futures = [producer.submit(f"hold{i}".encode(), timeout=60) for i in range(30)]
        wait_for(lambda: consumer.in_flight == 8, 10, "the default window (4 x 2 workers) to fill")
        wait_for(lambda: queue_depth(amqp, config.topology.request_queue) == 22, 10, "the other 22 to wait in the queue")
        consumer.set_concurrency(3)
        # The window is applied by a new registration on the queue (quorum queues take no other
        # prefetch change); the 8 requests the old one holds count on top until they are answered.
        wait_for(lambda: consumer.in_flight == 8 + 12, 10, "a new window of 4 x 3 workers")
        wait_for(lambda: queue_depth(amqp, config.topology.request_queue) == 10, 10, "10 left in the queue")
    finally:
        gate.open.set()
    assert [f.result(timeout=30) for f in futures] == [f"Consumer processed: hold{i}".encode() for i in range(30)]


def test_redelivered_requests_are_taken_one_at_a_time_before_the_window_opens(request, broker, make_config, start_consumer, start_producer, amqp):
    config = make_config(consumer={"concurrency": 4})
    producer = start_producer(config)
    requeued = [producer.submit(f"again{i}".encode(), timeout=60) for i in range(10)]
    wait_for(lambda: queue_depth(amqp, config.topology.request_queue) == 10, 10, "10 requests queued")
    # A consumer that takes all 10 and goes away without acking: the broker redelivers them.
    parameters = pika.URLParameters(broker.amqp_url)
    parameters.client_properties = {"connection_name": f"test:{request.node.name}:crashing-consumer"}
    connection = pika.BlockingConnection(parameters)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=10)
    taken: list[int] = []
    channel.basic_consume(config.topology.request_queue, lambda _ch, method, _p, _b: taken.append(method.delivery_tag))
    deadline = time.monotonic() + 10
    while len(taken) < 10 and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.1)
    assert len(taken) == 10
    connection.close()
    wait_for(lambda: queue_depth(amqp, config.topology.request_queue) == 10, 10, "the 10 requests back in the queue")
    fresh = [producer.submit(f"fresh{i}".encode(), timeout=60) for i in range(10)]
    wait_for(lambda: queue_depth(amqp, config.topology.request_queue) == 20, 10, "10 fresh requests behind them")

    gate = Gate(work_seconds=0.05)
    start_consumer(config, handler=gate)
    assert [f.result(timeout=30) for f in requeued] == [f"Consumer processed: again{i}".encode() for i in range(10)]
    assert [f.result(timeout=30) for f in fresh] == [f"Consumer processed: fresh{i}".encode() for i in range(10)]

    redelivered = [run for run in gate.runs if run[1]]
    assert sorted(body for body, _, _ in redelivered) == sorted(f"again{i}".encode() for i in range(10))
    assert all(running == 1 for _, _, running in redelivered), f"a redelivery ran beside another request: {gate.runs}"
    assert gate.runs[:10] == redelivered, "the redeliveries must all run before any fresh request"
    assert max(running for _, _, running in gate.runs[10:]) > 1, "the first fresh request must open the full window"


def test_an_adaptive_window_answers_every_request_of_a_burst(make_config, start_consumer, start_producer, caplog):
    config = make_config(consumer={"concurrency": 2, "window": "adaptive"})
    start_consumer(config)
    producer = start_producer(config)
    with caplog.at_level("INFO", logger="burrow.amqp.window"):
        futures = {i: producer.submit(f"a{i}".encode(), timeout=60) for i in range(3000)}
        answers = {i: f.result(timeout=90) for i, f in futures.items()}
    assert [i for i, reply in answers.items() if reply != f"Consumer processed: a{i}".encode()] == []
    sizes = [int(m.split(" -> ")[1].split(":")[0]) for m in caplog.messages if m.startswith("Request window ")]
    # A queue of thousands fills the window and an idle broker's latency stays flat: it grows.
    assert sizes and all(2 <= size <= 32 for size in sizes), sizes
