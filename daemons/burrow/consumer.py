"""The consumer: runs the handler on requests in a worker pool and answers each one exactly once
per delivery, acknowledging a request only after the broker confirmed its reply.

Two connections share one I/O loop and thread: one consumes requests (prefetch bounded by config),
one publishes replies with publisher confirms. Handlers run in a thread pool, so a handler that runs
for minutes never starves heartbeats; workers hand results back with ``add_callback_threadsafe``
and never touch a channel. Malformed or stale requests are rejected to the dead-letter queue with a
logged reason. If the consuming channel is lost after a handler ran, the request is redelivered
(flagged ``redelivered``) and the producer drops the duplicate reply: at least once, nothing lost.

The request window (prefetch) starts at one after every subscribe and stays there while the
broker hands back redeliveries: a consumer that crashed returns every request it held, and one of
them may be the request that crashed it. Taking those one at a time means only that request is
unacked when it crashes the next consumer, so the quorum queue's delivery limit dead-letters it
alone instead of every request delivered beside it. The first fresh request opens the full window.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import logging
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import pika
import pika.spec
from pika.adapters.select_connection import IOLoop
from pika.channel import Channel

from burrow import metrics, tracing
from burrow.amqp.setup import RabbitMQSetup, call_every
from burrow.config import BurrowConfig, default_prefetch
from burrow.handlers import Handler, RequestContext, load_handler
from burrow.protocol import (
    HEADER_ERROR_TYPE,
    HEADER_STATUS,
    HEADER_TRACEBACK,
    STATUS_ERROR,
    STATUS_OK,
    request_deadline,
)
from burrow.topology import DIRECT_REPLY_TO

logger = logging.getLogger(__name__)

REPLY_RETRY_DELAY = 1.0


@dataclass(eq=False, slots=True)
class _Delivery:
    """One request between its delivery and its ack, with the reply once the handler ran."""

    delivery_tag: int
    generation: int  # which consuming channel delivered it; acks go only to that channel
    correlation_id: str
    reply_to: str
    context: RequestContext
    body: bytes
    reply: bytes = b""
    reply_headers: dict[str, Any] | None = None
    returned: str | None = None


@dataclass(slots=True)
class ConsumerStats:
    received: int = 0
    processed: int = 0
    handler_errors: int = 0
    dead_lettered: int = 0
    stale: int = 0
    redelivered: int = 0


class Consumer:
    """Consume requests, run ``consumer.handler`` on them, publish replies, then ack.

    :meth:`start` loads the handler (raising :class:`~burrow.errors.HandlerLoadError` at once
    when it is wrong) and starts the I/O thread; :meth:`stop` drains.
    """

    def __init__(self, config: BurrowConfig, *, handler: Handler | None = None, name: str = "consumer") -> None:
        self._config = config
        self._settings = config.consumer
        self._handler = handler or load_handler(self._settings.handler)
        self._name = name
        self._ioloop = IOLoop()
        self._consume = RabbitMQSetup(
            config.rabbitmq, config.topology, self._ioloop,
            role=f"{name}-consume", on_ready=self.on_consume_channel_ready, on_lost=self.on_consume_lost,
        )
        self._publish = RabbitMQSetup(
            config.rabbitmq, config.topology, self._ioloop,
            role=f"{name}-publish", on_ready=self.on_publish_channel_ready, on_lost=self.on_publish_lost,
            declare=False,
        )
        self._pool = self._new_pool(self._settings.concurrency)
        self._concurrency = self._settings.concurrency
        self._thread = threading.Thread(target=self._run, name=f"burrow-{name}-io", daemon=True)
        # I/O-thread state.
        self._consume_channel: Channel | None = None
        self._consumer_tag: str | None = None
        # True from each subscribe until the first request that is not a redelivery (module docstring).
        self._probation = True
        self._probation_redeliveries = 0
        self._generation = 0
        self._publish_channel: Channel | None = None
        self._next_publish_tag = 1
        self._unconfirmed: dict[int, _Delivery] = {}
        self._replies_waiting: collections.deque[_Delivery] = collections.deque()
        # Delivery tags of the current consuming channel handed to a worker and not yet acked or
        # rejected, oldest first: every tag below the oldest one can be acked with multiple=True.
        self._unsettled: dict[int, None] = {}
        # Workers append finished deliveries here and wake the I/O thread only if no wake-up is
        # already pending, so a burst of replies costs one wake-up, not one per reply.
        self._finished: collections.deque[_Delivery] = collections.deque()
        self._wake_scheduled = False
        self._in_flight = 0
        self._draining = False
        self._periodic: list[Callable[[], None]] = []
        self._ready = threading.Event()
        self._drained = threading.Event()
        self._stopped = threading.Event()
        self.stats = ConsumerStats()

    @staticmethod
    def _new_pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="burrow-handler")

    # ----------------------------------------------------------------- public API (any thread)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def concurrency(self) -> int:
        return self._concurrency

    @property
    def reconnects(self) -> int:
        return self._consume.reconnects + self._publish.reconnects

    def start(self) -> "Consumer":
        self._thread.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until both connections are up and the consumer is registered on the queue."""
        return self._ready.wait(timeout)

    def add_periodic(self, interval: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on the I/O thread every ``interval`` seconds (watchdog pings, status)."""
        self._ioloop.add_callback_threadsafe(lambda: self._periodic.append(call_every(self._ioloop, interval, fn)))

    def set_concurrency(self, workers: int) -> None:
        """Resize the worker pool and the prefetch window (SIGHUP reload); running handlers finish."""
        if workers < 1:
            raise ValueError("concurrency must be at least 1")

        def apply() -> None:
            old, self._pool = self._pool, self._new_pool(workers)
            self._concurrency = workers
            old.shutdown(wait=False)
            if not self._probation:
                self._resubscribe()
            logger.info("Consumer concurrency is now %d (prefetch %d)", workers, self._prefetch())

        self._ioloop.add_callback_threadsafe(apply)

    def _prefetch(self) -> int:
        return self._settings.prefetch or default_prefetch(self._concurrency)

    def stop(self, timeout: float | None = None) -> bool:
        """Drain and disconnect: cancel the consumer, let in-flight handlers finish, publish their
        replies and ack, then close both connections. Returns False if the drain hit ``timeout``
        (unacked requests then go back to the queue when the connection closes)."""
        if self._stopped.is_set():
            return True
        seconds = self._settings.shutdown_timeout if timeout is None else timeout
        drained = True
        if self._thread.is_alive():
            self._ioloop.add_callback_threadsafe(self._begin_drain)
            drained = self._drained.wait(seconds)
            if not drained:
                logger.warning("Drain timed out after %.1fs with %d requests in flight; they will be redelivered",
                               seconds, self._in_flight)
            self._ioloop.add_callback_threadsafe(self._close_connections)
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._stopped.set()
        return drained

    # ----------------------------------------------------------------- I/O thread: lifecycle

    def _run(self) -> None:
        self._publish.start()
        self._consume.start()
        self._ioloop.start()
        self._ioloop.close()

    def on_publish_channel_ready(self, channel: Channel) -> None:
        channel.add_on_return_callback(self.on_reply_returned)
        channel.confirm_delivery(ack_nack_callback=self.on_reply_confirm, callback=lambda _f: self.on_confirms_enabled(channel))

    def on_confirms_enabled(self, channel: Channel) -> None:
        self._publish_channel = channel
        self._next_publish_tag = 1
        resend = list(self._unconfirmed.values())
        self._unconfirmed.clear()
        self._replies_waiting.extendleft(reversed(resend))
        self._publish_waiting()
        self._maybe_start_consuming()

    def on_publish_lost(self, _reason: str) -> None:
        self._publish_channel = None
        self._ready.clear()

    def on_consume_channel_ready(self, channel: Channel) -> None:
        self._generation += 1
        self._consume_channel = channel
        self._unsettled.clear()
        self._probation = True
        self._probation_redeliveries = 0
        self._maybe_start_consuming()

    def _maybe_start_consuming(self) -> None:
        """Register on the request queue once both channels are usable (and not draining)."""
        channel = self._consume_channel
        if channel is None or not channel.is_open or self._publish_channel is None or self._draining:
            return
        if self._consumer_tag is not None:
            self._ready.set()
            return
        self._subscribe(channel, on_ok=self.on_consume_ok)

    def _subscribe(self, channel: Channel, on_ok: Callable[[], None]) -> None:
        """basic.qos, then basic.consume: a per-consumer prefetch applies to consumers registered
        after it (and quorum queues accept no other kind), so changing the window means a new
        registration. pika sends the consume only after the broker's qos-ok."""
        window = 1 if self._probation else self._prefetch()
        channel.basic_qos(prefetch_count=window)
        self._consumer_tag = channel.basic_consume(
            queue=self._config.topology.request_queue,
            on_message_callback=self.on_request,
            callback=lambda _f: on_ok(),
        )

    def _resubscribe(self) -> None:
        """Apply a new window: cancel this channel's registration and register again.

        Requests the old registration delivered stay ours and are acked on this channel as usual
        (the broker keeps them with the cancelled consumer). Any it was still sending when the
        cancel arrived come back to the queue (pika rejects deliveries to a cancelled tag) and
        are redelivered, flagged, to the new registration.
        """
        channel = self._consume_channel
        if channel is None or not channel.is_open or self._consumer_tag is None or self._draining:
            return
        channel.basic_cancel(self._consumer_tag)
        self._subscribe(channel, on_ok=lambda: logger.debug("Request window is now %d", self._prefetch()))

    def on_consume_ok(self) -> None:
        logger.info("Consumer ready: %d workers, prefetch %d, queue %s, handler %s",
                    self._concurrency, self._prefetch(), self._config.topology.request_queue, self._settings.handler)
        self._ready.set()

    def on_consume_lost(self, _reason: str) -> None:
        self._consume_channel = None
        self._consumer_tag = None
        self._ready.clear()

    # ----------------------------------------------------------------- I/O thread: requests

    def on_request(self, channel: Channel, method: pika.spec.Basic.Deliver, properties: pika.BasicProperties, body: bytes) -> None:
        """Validate one request and hand it to the worker pool, or dead-letter it with a reason."""
        self.stats.received += 1
        metrics.request_received()
        if method.redelivered:
            self.stats.redelivered += 1
            if self._probation:
                self._probation_redeliveries += 1
                if self._probation_redeliveries == 1:
                    logger.info("Redelivered requests waiting: taking them one at a time until a fresh one arrives")
        elif self._probation:
            self._end_probation()
        problem = self._malformed(properties, body)
        if problem is not None:
            self._dead_letter(channel, method.delivery_tag, properties, problem)
            return
        deadline = request_deadline(properties)
        if deadline is not None and time.time() > deadline:
            self.stats.stale += 1
            self._dead_letter(channel, method.delivery_tag, properties, "expired before processing (deadline passed)")
            return
        context = RequestContext(
            correlation_id=properties.correlation_id,
            message_id=properties.message_id,
            redelivered=bool(method.redelivered),
            headers=dict(properties.headers or {}),
            content_type=properties.content_type,
        )
        delivery = _Delivery(method.delivery_tag, self._generation, properties.correlation_id, properties.reply_to, context, body)
        self._in_flight += 1
        self._unsettled[method.delivery_tag] = None
        self._pool.submit(self._work, delivery)

    def _end_probation(self) -> None:
        """A fresh request arrived: the redeliveries are behind us, open the full window."""
        if self._probation_redeliveries:
            logger.info("Took %d redelivered requests one at a time; request window is now %d",
                        self._probation_redeliveries, self._prefetch())
        self._probation = False
        self._probation_redeliveries = 0
        self._resubscribe()

    def _malformed(self, properties: pika.BasicProperties, body: bytes) -> str | None:
        settings = self._settings
        if not properties.reply_to:
            return "no reply_to"
        if not properties.correlation_id:
            return "no correlation_id"
        if len(body) > settings.max_message_bytes:
            return f"body of {len(body)} bytes exceeds consumer.max_message_bytes ({settings.max_message_bytes})"
        content_type = properties.content_type
        if content_type is not None:
            base = content_type.split(";", 1)[0].strip().lower()
            if base not in settings.content_types:
                return f"content type {content_type!r} not in consumer.content_types"
            if base.startswith("text/"):
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return f"declared {base} but the body is not valid UTF-8 ({exc.reason} at byte {exc.start})"
        return None

    def _dead_letter(self, channel: Channel, delivery_tag: int, properties: pika.BasicProperties, reason: str) -> None:
        self.stats.dead_lettered += 1
        metrics.dead_lettered()
        logger.warning(
            "Dead-lettering request: %s", reason,
            extra={"CORRELATION_ID": properties.correlation_id or "-", "MESSAGE_ID": properties.message_id or "-",
                   "QUEUE": self._config.topology.request_queue, "TRACE_ID": tracing.trace_id(properties.headers)},
        )
        if channel.is_open:
            channel.basic_reject(delivery_tag, requeue=False)

    # ----------------------------------------------------------------- worker threads

    def _work(self, delivery: _Delivery) -> None:
        """Run the handler (worker thread) and hand the reply to the I/O thread."""
        started = time.monotonic()
        try:
            with tracing.active(delivery.context.trace_id):
                reply = self._handler(delivery.body, delivery.context)
            if isinstance(reply, (bytearray, memoryview)):
                reply = bytes(reply)
            if not isinstance(reply, bytes):
                raise TypeError(f"handler returned {type(reply).__name__}, expected bytes")
            delivery.reply = reply
            delivery.reply_headers = {HEADER_STATUS: STATUS_OK}
            metrics.reply_received(time.monotonic() - started, "ok")
        except Exception as exc:
            metrics.reply_received(time.monotonic() - started, "error")
            logger.warning("Handler %s raised %s: %s", self._settings.handler, type(exc).__name__, exc,
                           extra={"CORRELATION_ID": delivery.correlation_id, "HANDLER": self._settings.handler,
                                  "TRACE_ID": delivery.context.trace_id})
            headers: dict[str, Any] = {HEADER_STATUS: STATUS_ERROR, HEADER_ERROR_TYPE: type(exc).__name__}
            if self._settings.include_traceback:
                headers[HEADER_TRACEBACK] = traceback.format_exc()
            delivery.reply = str(exc).encode("utf-8", "replace")
            delivery.reply_headers = headers
        self._finished.append(delivery)
        if not self._wake_scheduled:
            self._wake_scheduled = True
            self._ioloop.add_callback_threadsafe(self._replies_ready)

    # ----------------------------------------------------------------- I/O thread: replies

    def _replies_ready(self) -> None:
        """Publish the replies of every handler that finished since the last wake-up."""
        self._wake_scheduled = False
        finished = self._finished
        while finished:
            delivery = finished.popleft()
            if delivery.reply_headers is not None and delivery.reply_headers.get(HEADER_STATUS) == STATUS_ERROR:
                self.stats.handler_errors += 1
            self._replies_waiting.append(delivery)
        self._publish_waiting()

    def _publish_waiting(self) -> None:
        channel = self._publish_channel
        if channel is None or not channel.is_open:
            return
        reply_exchange = self._config.topology.reply_exchange
        while self._replies_waiting:
            delivery = self._replies_waiting.popleft()
            direct = delivery.reply_to.startswith(DIRECT_REPLY_TO)
            properties = pika.BasicProperties(
                content_type="application/octet-stream",
                delivery_mode=pika.DeliveryMode.Transient if direct else pika.DeliveryMode.Persistent,
                correlation_id=delivery.correlation_id,
                headers=tracing.propagate(delivery.context.headers, delivery.reply_headers),
            )
            try:
                # Not mandatory for direct reply-to: RabbitMQ 3.10 returns every such reply as
                # NO_ROUTE although it delivers it (the benchmark saw all of them returned, and all
                # answered), so mandatory would dead-letter every answered request.
                channel.basic_publish("" if direct else reply_exchange, delivery.reply_to, delivery.reply, properties,
                                      mandatory=not direct)
            except Exception as exc:
                logger.warning("Reply publish failed (%s); retrying after reconnect", exc)
                self._replies_waiting.appendleft(delivery)
                return
            self._unconfirmed[self._next_publish_tag] = delivery
            self._next_publish_tag += 1

    def on_reply_returned(self, _channel: Channel, method: pika.spec.Basic.Return, properties: pika.BasicProperties, _body: bytes) -> None:
        """The reply had nowhere to go (reply queue deleted or never existed): mark it for the DLQ."""
        for delivery in self._unconfirmed.values():
            if delivery.correlation_id == properties.correlation_id:
                delivery.returned = f"reply unroutable: no queue {method.routing_key!r} ({method.reply_text})"

    def on_reply_confirm(self, frame: pika.frame.Method) -> None:
        """Broker ack/nack of replies: ack (or retry) their requests, the whole batch at once."""
        method = frame.method
        if method.multiple:
            # Tags enter the dict in increasing order, so the confirmed ones are its head.
            tags = list(itertools.takewhile(lambda tag: tag <= method.delivery_tag, self._unconfirmed))
        else:
            tags = [method.delivery_tag] if method.delivery_tag in self._unconfirmed else []
        nacked = isinstance(method, pika.spec.Basic.Nack)
        settled = []
        for tag in tags:
            delivery = self._unconfirmed.pop(tag)
            if nacked:
                logger.warning("Broker refused a reply (nack); retrying in %.0fs", REPLY_RETRY_DELAY,
                               extra={"CORRELATION_ID": delivery.correlation_id})
                self._ioloop.call_later(REPLY_RETRY_DELAY, lambda d=delivery: self._reply_ready_again(d))
                continue
            settled.append(delivery)
        if settled:
            self._settle(settled)

    def _reply_ready_again(self, delivery: _Delivery) -> None:
        self._replies_waiting.append(delivery)
        self._publish_waiting()

    def _settle(self, deliveries: list[_Delivery]) -> None:
        """Their replies are safe at the broker: ack the requests (dead-letter those whose reply bounced).

        Bounced ones are rejected first; then one ``basic_ack(multiple=True)`` covers every tag below
        the oldest request still unsettled on this channel (all of those are settled), and only
        tags above it are acked one by one. A request from an older channel is left alone: the
        broker redelivers it and the producer drops the duplicate reply.
        """
        self._in_flight -= len(deliveries)
        channel = self._consume_channel
        usable = channel is not None and channel.is_open
        acks = []
        for delivery in deliveries:
            if not usable or delivery.generation != self._generation:
                logger.debug("Request's channel is gone; the broker redelivers it and the duplicate reply is dropped",
                             extra={"CORRELATION_ID": delivery.correlation_id})
                continue
            self._unsettled.pop(delivery.delivery_tag, None)
            if delivery.returned:
                self.stats.dead_lettered += 1
                metrics.dead_lettered()
                logger.warning("Dead-lettering request: %s", delivery.returned,
                               extra={"CORRELATION_ID": delivery.correlation_id, "QUEUE": self._config.topology.request_queue})
                channel.basic_reject(delivery.delivery_tag, requeue=False)
            else:
                logger.debug("Handled request", extra={"CORRELATION_ID": delivery.correlation_id,
                                                       "HANDLER": self._settings.handler, "TRACE_ID": delivery.context.trace_id})
                acks.append(delivery.delivery_tag)
        if acks:
            self.stats.processed += len(acks)
            oldest = next(iter(self._unsettled), None)
            below = [tag for tag in acks if oldest is None or tag < oldest]
            if below:
                channel.basic_ack(max(below), multiple=True)
            for tag in acks:
                if oldest is not None and tag > oldest:
                    channel.basic_ack(tag)
        self._check_drained()

    # ----------------------------------------------------------------- I/O thread: shutdown

    def _begin_drain(self) -> None:
        """Step 1 of shutdown: stop new deliveries; requests already received still get answered."""
        self._draining = True
        self._ready.clear()
        channel = self._consume_channel
        if channel is not None and channel.is_open and self._consumer_tag is not None:
            channel.basic_cancel(self._consumer_tag)
        self._consumer_tag = None
        self._check_drained()

    def _check_drained(self) -> None:
        if self._draining and self._in_flight == 0:
            self._drained.set()

    def _close_connections(self) -> None:
        """Step 2 of shutdown: close both connections, then stop the I/O loop."""
        for cancel in self._periodic:
            cancel()
        remaining = {"count": 2}

        def closed() -> None:
            remaining["count"] -= 1
            if remaining["count"] == 0:
                self._ioloop.stop()

        self._consume.stop(closed)
        self._publish.stop(closed)
