"""The consumer's request window: how many requests it holds unacked, after start, reload and crashes."""

from __future__ import annotations

import collections
import threading
import time

import pika

from burrow.handlers import RequestContext
from burrow.services import queue_name

from broker_helpers import queue_depth
from replies import reply_or_error
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


def test_window_holds_eight_requests_per_worker_and_follows_a_concurrency_change(make_config, start_consumer, start_producer, amqp):
    gate = Gate()
    config = make_config(consumer={"concurrency": 2})
    consumer = start_consumer(config, handler=gate)
    producer = start_producer(config)
    try:
        # The first fresh request opens the window; it is answered at once, so it holds no slot.
        assert producer.call(b"first", timeout=10) == b"Consumer processed: first"
        futures = [producer.submit(f"hold{i}".encode(), timeout=60) for i in range(30)]
        wait_for(lambda: consumer.in_flight == 16, 10, "the default window (8 x 2 workers) to fill")
        wait_for(lambda: queue_depth(amqp, config.topology.request_queue) == 14, 10, "the other 14 to wait in the queue")
        consumer.set_concurrency(3)
        # The window widens by one registration more on the queue for the 8 missing requests
        # (quorum queues take no other prefetch change); the 16 held count in the new window.
        wait_for(lambda: consumer.in_flight == 24, 10, "a window of 8 x 3 workers")
        wait_for(lambda: queue_depth(amqp, config.topology.request_queue) == 6, 10, "6 left in the queue")
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
    # 2 ms of work per request: the burst lasts at least 3 s however fast the machine, so the
    # window, which looks once a second, has several looks while a backlog fills it.
    start_consumer(config, handler=Gate(work_seconds=0.002))
    producer = start_producer(config)
    with caplog.at_level("INFO", logger="burrow.amqp.window"):
        futures = {i: producer.submit(f"a{i}".encode(), timeout=60) for i in range(3000)}
        answers = {i: f.result(timeout=90) for i, f in futures.items()}
    assert [i for i, reply in answers.items() if reply != f"Consumer processed: a{i}".encode()] == []
    sizes = [int(m.split(" -> ")[1].split(":")[0]) for m in caplog.messages if m.startswith("Request window ")]
    # A queue of thousands fills the window and an idle broker's latency stays flat: it grows.
    assert sizes and all(2 <= size <= 32 for size in sizes), sizes


def dead_letter_reasons(channel, queue: str) -> collections.Counter[str]:
    """How many dead letters wait in ``queue``, by the reason the broker gave (left in place)."""
    reasons: collections.Counter[str] = collections.Counter()
    while (got := channel.basic_get(queue, auto_ack=False))[0] is not None:
        reasons[str((got[1].headers or {}).get("x-first-death-reason"))] += 1
    return reasons


class Tally:
    """A handler that counts how often each request body ran, and which ran as redeliveries."""

    def __init__(self, prefix: bytes = b"") -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self.runs: collections.Counter[bytes] = collections.Counter()
        self.redelivered: list[bytes] = []

    def __call__(self, body: bytes, context: RequestContext) -> bytes:
        with self._lock:
            self.runs[body] += 1
            if context.redelivered:
                self.redelivered.append(body)
        return self.prefix + body


def test_moving_the_window_under_a_backlog_returns_no_request_to_the_queue(make_config, start_consumer, start_producer, amqp):
    """A window that moves while the broker is handing out a backlog (concurrency 2 <-> 4, so
    prefetch 8 <-> 16, 16 times) sends no request back to the queue: each ran exactly once and
    none came redelivered (nothing crashed), none was dead-lettered. A cancelled registration
    whose deliveries pika rejected with requeue returned some on every change."""
    tally = Tally(b"ok:")
    count = 6000
    config = make_config(consumer={"concurrency": 2}, producer={"max_in_flight": count})
    producer = start_producer(config)
    futures = {i: producer.submit(f"r{i}".encode(), timeout=120) for i in range(count)}
    wait_for(lambda: queue_depth(amqp, config.topology.request_queue) == count, 30, f"{count} requests queued")
    consumer = start_consumer(config, handler=tally)
    changes = 0
    for changes in range(1, 17):
        done = consumer.stats().processed
        consumer.set_concurrency(4 if changes % 2 else 2)
        wait_for(lambda: consumer.stats().processed >= min(done + 150, count), 30, "requests flowing after the change")
    answers = {i: reply_or_error(f, 120) for i, f in futures.items()}
    assert dead_letter_reasons(amqp, config.topology.dead_letter_queue) == {}
    wrong = {i: reply for i, reply in answers.items() if reply != f"ok:r{i}".encode()}
    assert wrong == {}, f"{len(wrong)} of {count} not answered by the handler"
    assert changes == 16 and queue_depth(amqp, config.topology.request_queue) == 0
    assert len(tally.runs) == count and [body for body, runs in tally.runs.items() if runs != 1] == []
    assert tally.redelivered == [] and consumer.stats().redelivered == 0, (
        f"{len(tally.redelivered)} requests came back to the queue: {tally.redelivered[:5]}")


def test_a_consumer_starting_on_eight_backlogs_runs_every_request_once(make_config, start_consumer, start_producer, amqp):
    """Eight services with requests already queued: every service's window opens on its first
    request while the others still register, and no request is returned to its queue for it.
    Cancelling the probation registration to widen it returned 22 to 26 of these 320 requests
    until the broker dead-lettered them as delivery_limit (the tests' limit is 3), 4 runs of 4."""
    names = [f"s{i}" for i in range(8)]
    config = make_config(services={name: "burrow.handlers:echo" for name in names}, consumer={"concurrency": 2})
    start_consumer(config).stop(timeout=10)  # the service queues exist; nobody serves them now
    producer = start_producer(config)
    futures = {(name, i): producer.submit(f"{name}-{i}".encode(), service=name, timeout=60)
               for i in range(40) for name in names}
    for name in names:
        queue = queue_name(config.topology.request_queue, name)
        wait_for(lambda: queue_depth(amqp, queue) == 40, 30, f"40 requests queued for {name}")
    tallies = {name: Tally(name.encode() + b":") for name in names}
    consumer = start_consumer(config, handlers=tallies)
    answers = {key: reply_or_error(f, 120) for key, f in futures.items()}
    assert dead_letter_reasons(amqp, config.topology.dead_letter_queue) == {}
    wrong = {key: reply for key, reply in answers.items() if reply != f"{key[0]}:{key[0]}-{key[1]}".encode()}
    assert wrong == {}, f"{len(wrong)} of {len(answers)} not answered by their handler"
    for name, tally in tallies.items():
        assert len(tally.runs) == 40 and set(tally.runs.values()) == {1}, (name, tally.runs)
        assert tally.redelivered == [], f"{name}: {tally.redelivered} came back to the queue"
    assert consumer.stats().redelivered == 0
