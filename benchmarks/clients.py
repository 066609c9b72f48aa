"""The benchmark's workload processes: burrow's producer, the seed-style baseline, the ceiling, the floor.

Every function named ``*_main`` is the body of a child process started by :mod:`benchmarks.harness`
(``multiprocessing`` with the *spawn* method), so no two measured parts share a GIL: the
orchestrator, each client and each consumer are separate processes. Clients take commands from
a pipe and answer each with one result dictionary; the orchestrator reads their memory from
``/proc/<pid>/status`` between commands.

Commands (tuples sent on the pipe):

* ``("closed", count, concurrency, max_seconds, keep)``: keep ``concurrency`` requests in flight
  until ``count`` replies arrived or ``max_seconds`` passed (then wait for those already sent);
  with ``keep`` false no latency is kept (the memory runs: 200k samples would grow the client);
* ``("rate", count, rate, max_seconds)``: open loop, one request every ``1/rate`` seconds; latency
  counts from the request's scheduled time, so a stalled client cannot hide queueing delay;
* ``("stop",)``: disconnect and exit.

Every reply is compared with what the echo handler must return; a wrong reply counts as failed.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import logging
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import pika

logger = logging.getLogger(__name__)

#: The request body of every workload: 100 bytes.
BODY = b"b" * 100
#: What the echo handler (``burrow.handlers:echo``, and the baseline's copy of it) answers.
EXPECTED = b"Consumer processed: " + BODY
#: Threads that drive burrow's producer in a closed loop (each keeps a share of the window).
DRIVER_THREADS = 4
#: Seconds a sent request may take before the client gives up on it (failed, not hung).
REPLY_TIMEOUT = 30.0

Result = dict[str, Any]


def stop_gracefully(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a daemon process (its graceful drain), SIGKILL if it takes longer than 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _result(sent: int, ok: int, failed: int, elapsed: float, latencies: list[float]) -> Result:
    return {"sent": sent, "ok": ok, "failed": failed, "elapsed": elapsed, "latencies": latencies}


# --------------------------------------------------------------------------- burrow's producer


class BurrowDriver:
    """Runs the workloads through :class:`burrow.Producer`'s public API from several threads."""

    def __init__(self, producer: Any, services: tuple[str, ...] = ()) -> None:
        self._producer = producer
        self._services = services

    def closed(self, count: int, concurrency: int, max_seconds: float, keep: bool = True) -> Result:
        """Split the window over up to ``DRIVER_THREADS`` threads; each waits on its oldest future."""
        threads = min(concurrency, DRIVER_THREADS)
        windows = [concurrency // threads + (1 if n < concurrency % threads else 0) for n in range(threads)]
        quotas = [count // threads + (1 if n < count % threads else 0) for n in range(threads)]
        latencies: list[float] = []
        failures = [0] * threads
        answered = [0] * threads
        sent = [0] * threads
        started = time.monotonic()
        deadline = started + max_seconds

        def drive(index: int) -> None:
            pending: collections.deque[tuple[float, concurrent.futures.Future[bytes]]] = collections.deque()
            targets = self._services or (None,)
            submit = functools.partial(self._producer.submit, service=targets[index % len(targets)])
            quota, window = quotas[index], windows[index]
            while True:
                while sent[index] < quota and len(pending) < window and time.monotonic() < deadline:
                    pending.append((time.monotonic(), submit(BODY)))
                    sent[index] += 1
                if not pending:
                    return
                begin, future = pending.popleft()
                try:
                    reply = future.result(timeout=REPLY_TIMEOUT)
                except Exception as exc:
                    failures[index] += 1
                    logger.debug("Request failed: %s", exc)
                    continue
                if reply != EXPECTED:
                    failures[index] += 1
                    continue
                answered[index] += 1
                if keep:
                    latencies.append(time.monotonic() - begin)

        workers = [threading.Thread(target=drive, args=(n,), name=f"bench-driver-{n}") for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return _result(sum(sent), sum(answered), sum(failures), time.monotonic() - started, latencies)

    def rate(self, count: int, rate: float, max_seconds: float, in_flight: int | None = None) -> Result:
        """Submit on a fixed schedule from one thread; completions are timed on the I/O thread.

        With ``in_flight``, at most that many requests are outstanding, like an HTTP client with
        that many connections: a request due while all are taken waits, and the wait counts.
        """
        latencies: list[float] = []
        failures = [0]
        futures: list[concurrent.futures.Future[bytes]] = []
        started = time.monotonic()
        deadline = started + max_seconds
        slots = threading.BoundedSemaphore(in_flight or count or 1)

        def done(future: concurrent.futures.Future[bytes], scheduled: float) -> None:
            slots.release()
            if not future.cancelled() and future.exception() is None and future.result() == EXPECTED:
                latencies.append(time.monotonic() - scheduled)
            else:
                failures[0] += 1

        for index in range(count):
            scheduled = started + index / rate
            now = time.monotonic()
            if scheduled >= deadline:
                break
            if scheduled > now:
                time.sleep(scheduled - now)
            slots.acquire()
            future = self._producer.submit(BODY)
            future.add_done_callback(lambda f, s=scheduled: done(f, s))
            futures.append(future)
        concurrent.futures.wait(futures, timeout=REPLY_TIMEOUT)
        elapsed = time.monotonic() - started
        return _result(len(futures), len(latencies), failures[0] + sum(1 for f in futures if not f.done()), elapsed, latencies)


def burrow_client_main(conn: Connection, amqp_url: str, topology: dict[str, Any], direct: bool, instance_id: str,
                       hosts: tuple[str, ...] = (), services: tuple[str, ...] = ()) -> None:
    """Child process: one burrow Producer (default settings but ``reply_mode``) serving commands;
    with ``hosts``, connected to one of those cluster nodes instead of ``amqp_url``'s; with
    ``services``, each driver thread calls one of them in turn (else the default service)."""
    from burrow.config import BurrowConfig, ProducerConfig, RabbitMQConfig, TopologyConfig
    from burrow.producer import Producer

    logging.basicConfig(level=logging.WARNING)
    config = BurrowConfig(
        rabbitmq=RabbitMQConfig.from_url(amqp_url, connection_name=f"bench-{instance_id}", hosts=hosts),
        topology=TopologyConfig(**topology),
        producer=ProducerConfig(instance_id=instance_id, reply_mode="direct" if direct else "queue"),
    )
    producer = Producer(config, instance_id=instance_id, name="bench").start()
    if not producer.wait_ready(30):
        conn.send({"error": "burrow producer did not connect within 30 s"})
        return
    conn.send({"ready": True})
    _serve(conn, BurrowDriver(producer, services))
    producer.stop(timeout=10)


# --------------------------------------------------------------------------- the seed-style baseline


class BaselineClient:
    """The seed's RPC client: pika's BlockingConnection, an exclusive callback queue, no confirms.

    Requests are transient and unconfirmed; the client sends a window of requests and sends the
    next one as each reply arrives (all in one thread, as the seed did).
    """

    def __init__(self, amqp_url: str, queue: str) -> None:
        self._queue = queue
        self._connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        self._channel = self._connection.channel()
        self._callback_queue = self._channel.queue_declare(queue="", exclusive=True).method.queue
        self._channel.basic_consume(queue=self._callback_queue, on_message_callback=self._on_reply, auto_ack=True)
        self._pending: dict[str, float] = {}
        self._latencies: list[float] = []
        self._keep = True
        self._answered = 0
        self._failed = 0
        self._on_each_reply: Callable[[], None] = lambda: None

    def _send(self, scheduled: float | None = None) -> None:
        correlation_id = str(uuid.uuid4())
        self._pending[correlation_id] = time.monotonic() if scheduled is None else scheduled
        self._channel.basic_publish(
            exchange="",
            routing_key=self._queue,
            properties=pika.BasicProperties(reply_to=self._callback_queue, correlation_id=correlation_id),
            body=BODY,
        )

    def _on_reply(self, _channel: Any, _method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        begin = self._pending.pop(properties.correlation_id, None)
        if begin is None:
            return
        if body != EXPECTED:
            self._failed += 1
        else:
            self._answered += 1
            if self._keep:
                self._latencies.append(time.monotonic() - begin)
        self._on_each_reply()

    def _collect(self, until: float) -> None:
        """Process replies until none is pending (or ``until``: the rest count as failed)."""
        while self._pending and time.monotonic() < until:
            self._connection.process_data_events(time_limit=min(0.5, max(0.0, until - time.monotonic())))
        self._failed += len(self._pending)
        self._pending.clear()

    def closed(self, count: int, concurrency: int, max_seconds: float, keep: bool = True) -> Result:
        self._latencies, self._answered, self._failed, self._keep = [], 0, 0, keep
        started = time.monotonic()
        deadline = started + max_seconds
        sent = 0

        def refill() -> None:
            nonlocal sent
            while sent < count and len(self._pending) < concurrency and time.monotonic() < deadline:
                self._send()
                sent += 1

        self._on_each_reply = refill
        refill()
        self._collect(deadline + REPLY_TIMEOUT)
        self._on_each_reply = lambda: None
        return _result(sent, self._answered, self._failed, time.monotonic() - started, self._latencies)

    def rate(self, count: int, rate: float, max_seconds: float) -> Result:
        self._latencies, self._answered, self._failed, self._keep = [], 0, 0, True
        started = time.monotonic()
        deadline = started + max_seconds
        sent = 0
        for index in range(count):
            scheduled = started + index / rate
            if scheduled >= deadline:
                break
            while time.monotonic() < scheduled:
                self._connection.process_data_events(time_limit=max(0.0, scheduled - time.monotonic()))
            self._send(scheduled)
            sent += 1
        self._collect(time.monotonic() + REPLY_TIMEOUT)
        return _result(sent, self._answered, self._failed, time.monotonic() - started, self._latencies)

    def close(self) -> None:
        self._connection.close()


def baseline_client_main(conn: Connection, amqp_url: str, queue: str) -> None:
    """Child process: the seed-style RPC client serving commands."""
    logging.basicConfig(level=logging.WARNING)
    client = BaselineClient(amqp_url, queue)
    conn.send({"ready": True})
    _serve(conn, client)
    client.close()


def baseline_server_main(conn: Connection, amqp_url: str, queue: str) -> None:
    """Child process: the seed's RPC server, ``prefetch_count=1``, reply (transient) then ack."""
    logging.basicConfig(level=logging.WARNING)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_declare(queue=queue)
    channel.basic_qos(prefetch_count=1)

    def on_request(ch: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        ch.basic_publish(
            exchange="",
            routing_key=properties.reply_to,
            properties=pika.BasicProperties(correlation_id=properties.correlation_id),
            body=b"Consumer processed: " + body,
        )
        ch.basic_ack(delivery_tag=method.delivery_tag)

    channel.basic_consume(queue=queue, on_message_callback=on_request)
    conn.send({"ready": True})
    # Runs until the orchestrator terminates this process.
    channel.start_consuming()


# --------------------------------------------------------------------------- the floor at one in flight


FLOOR_EXCHANGE = "bench.floor.x"
FLOOR_REQUESTS = "bench.floor.requests"
FLOOR_REPLIES = "bench.floor.replies"


def _floor_channel(amqp_url: str) -> tuple[pika.BlockingConnection, Any]:
    """A connection and one channel in confirm mode, with the floor's topology declared."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.exchange_declare(FLOOR_EXCHANGE, exchange_type="direct", durable=True)
    channel.queue_declare(FLOOR_REQUESTS, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(FLOOR_REQUESTS, FLOOR_EXCHANGE, routing_key=FLOOR_REQUESTS)
    channel.queue_declare(FLOOR_REPLIES, durable=True)
    return connection, channel


def floor_server_main(conn: Connection, amqp_url: str) -> None:
    """Child process: the thinnest consumer with burrow's reliable-mode guarantees.

    Requests come from a quorum queue; the reply is persistent, mandatory and confirmed, and the
    request is acked only after the broker confirmed the reply. One thread, no pool, no hand-off.
    """
    logging.basicConfig(level=logging.WARNING)
    connection, channel = _floor_channel(amqp_url)
    channel.basic_qos(prefetch_count=1)
    persistent = pika.DeliveryMode.Persistent

    def on_request(ch: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        # With confirm mode on, BlockingChannel.basic_publish returns once the broker confirmed.
        ch.basic_publish("", properties.reply_to, b"Consumer processed: " + body,
                         pika.BasicProperties(correlation_id=properties.correlation_id, delivery_mode=persistent),
                         mandatory=True)
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(FLOOR_REQUESTS, on_request)
    conn.send({"ready": True})
    # Runs until the orchestrator terminates this process.
    channel.start_consuming()


class FloorClient:
    """The thinnest client with burrow's reliable-mode guarantees, one request at a time.

    Each request is persistent, mandatory and confirmed (the publish returns after the confirm)
    into a quorum queue through a direct exchange; the reply comes from a durable queue and is
    acked. Only the closed loop at one in flight: it measures what the broker's work on one
    request costs in latency when the client adds next to nothing.
    """

    def __init__(self, amqp_url: str) -> None:
        self._connection, self._channel = _floor_channel(amqp_url)
        self._reply: bytes | None = None
        self._channel.basic_consume(FLOOR_REPLIES, self._on_reply, exclusive=True)
        self._next_id = 0

    def _on_reply(self, ch: Any, method: Any, _properties: Any, body: bytes) -> None:
        self._reply = body
        ch.basic_ack(method.delivery_tag)

    def closed(self, count: int, concurrency: int, max_seconds: float, keep: bool = True) -> Result:
        if concurrency != 1:
            return {"error": "the floor client runs one request at a time"}
        latencies: list[float] = []
        ok = failed = sent = 0
        started = time.monotonic()
        deadline = started + max_seconds
        properties = pika.BasicProperties(reply_to=FLOOR_REPLIES, delivery_mode=pika.DeliveryMode.Persistent)
        while sent < count and time.monotonic() < deadline:
            self._next_id += 1
            properties.correlation_id = str(self._next_id)
            self._reply = None
            begin = time.monotonic()
            self._channel.basic_publish(FLOOR_EXCHANGE, FLOOR_REQUESTS, BODY, properties, mandatory=True)
            sent += 1
            give_up = begin + REPLY_TIMEOUT
            while self._reply is None and time.monotonic() < give_up:
                self._connection.process_data_events(time_limit=None)
            if self._reply == EXPECTED:
                ok += 1
                if keep:
                    latencies.append(time.monotonic() - begin)
            else:
                failed += 1
        return _result(sent, ok, failed, time.monotonic() - started, latencies)

    def close(self) -> None:
        self._connection.close()


def floor_client_main(conn: Connection, amqp_url: str) -> None:
    """Child process: the floor client serving commands."""
    logging.basicConfig(level=logging.WARNING)
    client = FloorClient(amqp_url)
    conn.send({"ready": True})
    _serve(conn, client)
    client.close()


# --------------------------------------------------------------------------- the broker's ceiling


def ceiling_consumer_main(conn: Connection, amqp_url: str, queue: str, count: int, max_seconds: float) -> None:
    """Child process: consume ``count`` transient messages (auto-ack) and report when they came."""
    logging.basicConfig(level=logging.WARNING)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_declare(queue=queue, auto_delete=True)
    state = {"received": 0, "first": 0.0, "last": 0.0}

    def on_message(_ch: Any, _method: Any, _properties: Any, _body: bytes) -> None:
        now = time.monotonic()
        if state["received"] == 0:
            state["first"] = now
        state["received"] += 1
        state["last"] = now

    channel.basic_consume(queue=queue, on_message_callback=on_message, auto_ack=True)
    conn.send({"ready": True})
    cpu = time.process_time()
    deadline = time.monotonic() + max_seconds
    while state["received"] < count and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.2)
    # CPU seconds from ready to the last message (waiting for the first one costs next to none).
    state["cpu"] = time.process_time() - cpu
    connection.close()
    conn.send(dict(state))


def ceiling_publisher_main(conn: Connection, amqp_url: str, queue: str, count: int, max_seconds: float) -> None:
    """Child process: publish ``count`` transient 100-byte messages, no confirms, as fast as pika can."""
    logging.basicConfig(level=logging.WARNING)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    properties = pika.BasicProperties()
    started = time.monotonic()
    cpu = time.process_time()
    deadline = started + max_seconds
    sent = 0
    while sent < count and time.monotonic() < deadline:
        channel.basic_publish(exchange="", routing_key=queue, body=BODY, properties=properties)
        sent += 1
    published = time.monotonic()
    cpu = time.process_time() - cpu
    connection.close()
    conn.send({"started": started, "published": published, "sent": sent, "cpu": cpu})


# --------------------------------------------------------------------------- command loop


def _serve(conn: Connection, driver: Any) -> None:
    """Answer the orchestrator's commands until ``("stop",)`` or a closed pipe."""
    while True:
        try:
            command = conn.recv()
        except EOFError:
            return
        kind = command[0]
        if kind == "stop":
            conn.send({"stopped": True})
            return
        if kind == "closed":
            conn.send(driver.closed(*command[1:]))
        elif kind == "rate":
            conn.send(driver.rate(*command[1:]))
        else:
            conn.send({"error": f"unknown command {kind!r}"})
