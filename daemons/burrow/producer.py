"""The producer: a thread-safe request/response client over RabbitMQ.

Caller threads call :meth:`Producer.submit` and get a ``concurrent.futures.Future``; they never
touch pika. One I/O thread owns the connection: it publishes queued requests (persistent,
``mandatory``, with publisher confirms and an AMQP expiration), matches replies by correlation id,
fails requests whose deadline passed, and after a connection loss reconnects and republishes every
request the broker had not confirmed. Requests the broker confirmed stay pending until their reply
or their deadline, because their reply will still reach the durable reply queue.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pika
import pika.exceptions
import pika.spec
from pika.adapters.select_connection import IOLoop
from pika.channel import Channel

from burrow import metrics, tracing
from burrow.amqp.setup import RabbitMQSetup, call_every
from burrow.config import BurrowConfig
from burrow.errors import (
    Backpressure,
    BrokerUnavailable,
    PublishError,
    RemoteError,
    RequestTimeout,
    UnroutableError,
)
from burrow.protocol import (
    CONTENT_TYPE,
    HEADER_DEADLINE,
    decode_reply,
)
from burrow.topology import DIRECT_REPLY_TO, reply_queue_name

logger = logging.getLogger(__name__)

DEADLINE_CHECK_INTERVAL = 0.05


class RequestFuture(Future):  # type: ignore[type-arg]
    """A ``Future[bytes]`` that also knows its request's ids (for logs and HTTP headers)."""

    correlation_id: str
    message_id: str


@dataclass(eq=False, slots=True)
class _Request:
    correlation_id: str
    body: bytes
    deadline: float  # time.monotonic() at which the request times out
    wall_deadline: float  # the same moment as time.time(), sent to the consumer
    headers: dict[str, Any]  # the caller's headers plus HEADER_DEADLINE, as published
    future: RequestFuture
    submitted: float = field(default_factory=time.monotonic)
    published: bool = False


@dataclass(slots=True)
class ProducerStats:
    """Counters since start; read them with :meth:`Producer.stats`."""

    submitted: int = 0
    published: int = 0
    republished: int = 0
    answered: int = 0
    remote_errors: int = 0
    timeouts: int = 0
    failed: int = 0
    orphaned_replies: int = 0
    duplicate_replies: int = 0


class Producer:
    """Send requests to the consumers and hand back their replies as futures.

    Use as a context manager, or call :meth:`start` and :meth:`close`. ``instance_id`` names the
    durable reply queue; two live producers must not share one (the second one's consume is
    refused and it keeps retrying), so give each process its own stable id.
    """

    def __init__(self, config: BurrowConfig, *, instance_id: str | None = None, name: str = "producer") -> None:
        self._config = config
        settings = config.producer
        self.instance_id = instance_id or settings.resolved_instance_id()
        self.direct = settings.reply_mode == "direct"
        self.reply_queue = DIRECT_REPLY_TO if self.direct else reply_queue_name(config.topology, self.instance_id)
        self._name = name
        self._request_timeout = settings.request_timeout
        self._max_message_bytes = settings.max_message_bytes
        self._slots = threading.BoundedSemaphore(settings.max_in_flight)
        self._lock = threading.Lock()
        self._pending: dict[str, _Request] = {}
        self._outbox: collections.deque[_Request] = collections.deque()
        self._wake_scheduled = False
        self._drained = threading.Condition(self._lock)
        # I/O-thread state: never touched by caller threads.
        self._unconfirmed: dict[int, _Request] = {}
        self._next_tag = 1
        self._deadlines: list[tuple[float, int, str]] = []
        self._deadline_seq = itertools.count()
        # Correlation ids are "<random prefix>-<counter>": unique without a uuid4() per request,
        # and a reply carrying this prefix whose request is no longer pending is a late or
        # duplicate one (answered, failed or timed out before), with no set of past ids to keep.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count(1)
        self._reply_ack: tuple[Channel, int] | None = None
        self._reply_ack_scheduled = False
        self._channel: Channel | None = None
        self._ready = threading.Event()
        self._closing = False
        self._closed = threading.Event()
        self._stats = ProducerStats()
        self._ioloop = IOLoop()
        self._setup = RabbitMQSetup(
            config.rabbitmq,
            config.topology,
            self._ioloop,
            role=name,
            on_ready=self.on_channel_ready,
            on_lost=self.on_connection_lost,
            reply_queue=None if self.direct else self.reply_queue,
        )
        self._thread = threading.Thread(target=self._run, name=f"burrow-{name}-io", daemon=True)
        self._periodic: list[Any] = []

    # ----------------------------------------------------------------- public API (any thread)

    @property
    def connected(self) -> bool:
        """True while a channel is open, the topology declared and replies are being consumed."""
        return self._ready.is_set()

    @property
    def in_flight(self) -> int:
        """Requests submitted and not yet answered, failed or timed out."""
        return len(self._pending)

    @property
    def reconnects(self) -> int:
        return self._setup.reconnects

    def stats(self) -> ProducerStats:
        return ProducerStats(**{name: getattr(self._stats, name) for name in ProducerStats.__slots__})

    def start(self, wait: float | None = None) -> "Producer":
        """Start the I/O thread; with ``wait``, block up to that many seconds for the first connect.

        Requests submitted before the broker is reachable wait in memory (bounded by
        ``max_in_flight``) and go out on connect, unless their deadline passes first.
        """
        self._thread.start()
        if wait is not None and not self._ready.wait(wait):
            logger.warning("Producer not connected after %.1fs; still retrying in the background", wait)
        return self

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def submit(
        self,
        body: bytes,
        *,
        timeout: float | None = None,
        headers: dict[str, Any] | None = None,
        block: bool = True,
    ) -> RequestFuture:
        """Queue ``body`` as a request; the returned future resolves to the reply body.

        The future fails with :class:`RequestTimeout` after ``timeout`` seconds (default
        ``producer.request_timeout``), :class:`RemoteError` if the handler raised,
        :class:`UnroutableError`/:class:`PublishError` if the broker refused it. Blocks while
        ``max_in_flight`` requests are outstanding, or raises :class:`Backpressure` if ``block`` is
        false.
        """
        if self._closing or self._closed.is_set():
            raise BrokerUnavailable("producer is closed")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"request body must be bytes, not {type(body).__name__}")
        if len(body) > self._max_message_bytes:
            raise ValueError(f"request body of {len(body)} bytes exceeds producer.max_message_bytes ({self._max_message_bytes})")
        if not self._slots.acquire(blocking=block):
            raise Backpressure(f"{self.in_flight} requests in flight (producer.max_in_flight)")
        if self._closing:
            self._slots.release()
            raise BrokerUnavailable("producer is closed")
        seconds = self._request_timeout if timeout is None else timeout
        correlation_id = f"{self._id_prefix}-{next(self._ids):x}"
        future = RequestFuture()
        future.correlation_id = correlation_id
        future.message_id = correlation_id
        now = time.monotonic()
        wall_deadline = time.time() + seconds
        request = _Request(
            correlation_id=correlation_id,
            body=bytes(body),
            deadline=now + seconds,
            wall_deadline=wall_deadline,
            headers={**tracing.with_traceparent(headers), HEADER_DEADLINE: int(wall_deadline * 1000)},
            future=future,
            submitted=now,
        )
        with self._lock:
            self._pending[correlation_id] = request
        self._stats.submitted += 1
        self._outbox.append(request)
        if not self._wake_scheduled:
            self._wake_scheduled = True
            self._ioloop.add_callback_threadsafe(self._flush)
        return future

    def call(self, body: bytes, *, timeout: float | None = None, headers: dict[str, Any] | None = None) -> bytes:
        """Send ``body`` and block for the reply; raises :class:`RequestTimeout` or :class:`RemoteError`."""
        future = self.submit(body, timeout=timeout, headers=headers)
        seconds = self._request_timeout if timeout is None else timeout
        # The I/O thread fails the future at its deadline; the margin only guards against a dead loop.
        return future.result(timeout=seconds + 5.0)

    def add_periodic(self, interval: float, fn: Any) -> None:
        """Run ``fn()`` on the I/O thread every ``interval`` seconds (watchdog pings, status)."""
        self._ioloop.add_callback_threadsafe(lambda: self._periodic.append(call_every(self._ioloop, interval, fn)))

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting requests, wait up to ``timeout`` seconds for in-flight replies, disconnect.

        Requests still unanswered then fail with :class:`BrokerUnavailable`; their replies, if any
        come later, stay in the durable reply queue and a restarted producer logs them as orphaned.
        """
        if self._closed.is_set():
            return
        self._closing = True
        seconds = self._config.producer.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + seconds
        with self._drained:
            while self._pending and time.monotonic() < deadline and self._thread.is_alive():
                self._drained.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        if self._thread.is_alive():
            self._ioloop.add_callback_threadsafe(self._shutdown)
            self._thread.join(timeout=max(5.0, self._config.rabbitmq.socket_timeout))
        self._fail_all(BrokerUnavailable("producer closed before the reply arrived"))
        self._closed.set()

    def __enter__(self) -> "Producer":
        return self.start(wait=self._config.rabbitmq.socket_timeout)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ----------------------------------------------------------------- I/O thread

    def _run(self) -> None:
        self._setup.start()
        self._periodic.append(call_every(self._ioloop, DEADLINE_CHECK_INTERVAL, self._expire_deadlines))
        self._ioloop.start()
        self._ioloop.close()

    def _shutdown(self) -> None:
        for cancel in self._periodic:
            cancel()
        self._ready.clear()
        self._setup.stop(self._ioloop.stop)

    def on_channel_ready(self, channel: Channel) -> None:
        """Fresh channel with the topology declared: enable confirms, consume replies, resend."""
        channel.add_on_return_callback(self.on_return)
        channel.confirm_delivery(ack_nack_callback=self.on_confirm, callback=lambda _f: self.on_confirms_enabled(channel))

    def on_confirms_enabled(self, channel: Channel) -> None:
        channel.basic_consume(
            queue=self.reply_queue,
            on_message_callback=self.on_reply,
            # Direct reply-to requires auto_ack. The durable reply queue must not use it: the broker
            # forgets an auto-acked reply once it leaves the queue, so replies still on their way
            # when the connection drops would be lost; unacked ones are redelivered after reconnect.
            auto_ack=self.direct,
            exclusive=not self.direct,
            callback=lambda _f: self.on_reply_consumer_ok(channel),
        )

    def on_reply_consumer_ok(self, channel: Channel) -> None:
        self._channel = channel
        self._next_tag = 1
        resend = [r for r in self._unconfirmed.values() if not r.future.done()]
        if self.direct:
            # Replies to the old channel's direct reply-to address are gone: resend what is pending.
            resend = [r for r in self._pending_snapshot() if r.published and not r.future.done()]
        self._unconfirmed.clear()
        if resend:
            logger.info("Republishing %d requests not confirmed before the connection loss", len(resend))
            self._stats.republished += len(resend)
            self._outbox.extendleft(reversed(resend))
        self._ready.set()
        logger.info("Producer %s ready: publishing to %s, replies on %s", self.instance_id,
                    self._config.topology.request_exchange, self.reply_queue)
        self._flush()

    def _pending_snapshot(self) -> list[_Request]:
        with self._lock:
            return sorted(self._pending.values(), key=lambda r: r.submitted)

    def on_connection_lost(self, reason: str) -> None:
        self._ready.clear()
        self._channel = None

    def _flush(self) -> None:
        """Publish everything queued by the caller threads (runs on the I/O thread)."""
        self._wake_scheduled = False
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        exchange = self._config.topology.request_exchange
        routing_key = self._config.topology.request_queue
        now_wall = time.time()
        outbox = self._outbox
        while outbox:
            request = outbox.popleft()
            if request.future.done():
                continue
            remaining_ms = int((request.wall_deadline - now_wall) * 1000)
            if remaining_ms <= 0:
                self._finish(request.correlation_id, error=RequestTimeout("the request's deadline passed before it could be published"))
                continue
            if not request.published:
                request.published = True
                self._schedule_deadline(request)
            properties = pika.BasicProperties(
                content_type=CONTENT_TYPE,
                delivery_mode=pika.DeliveryMode.Persistent,
                correlation_id=request.correlation_id,
                message_id=request.correlation_id,
                reply_to=self.reply_queue,
                expiration=str(remaining_ms),
                timestamp=int(now_wall),
                headers=request.headers,
            )
            try:
                channel.basic_publish(exchange, routing_key, request.body, properties, mandatory=True)
            except (pika.exceptions.AMQPChannelError, pika.exceptions.AMQPConnectionError) as exc:
                logger.warning("Publish failed (%s); the request will be resent after reconnecting", exc)
                outbox.appendleft(request)
                return
            except Exception as exc:
                self._finish(request.correlation_id, error=PublishError(f"cannot publish the request: {exc}"))
                continue
            self._unconfirmed[self._next_tag] = request
            self._next_tag += 1
            self._stats.published += 1
            metrics.request_sent()

    def _schedule_deadline(self, request: _Request) -> None:
        heapq.heappush(self._deadlines, (request.deadline, next(self._deadline_seq), request.correlation_id))

    def on_confirm(self, frame: pika.frame.Method) -> None:
        """Broker ack/nack of published requests (``multiple`` covers every tag up to this one)."""
        method = frame.method
        tags = self._confirmed_tags(method.delivery_tag, method.multiple)
        if isinstance(method, pika.spec.Basic.Nack):
            for tag in tags:
                request = self._unconfirmed.pop(tag)
                self._finish(request.correlation_id, error=PublishError("the broker refused the request (nack): the request queue is full or unavailable"))
        else:
            for tag in tags:
                del self._unconfirmed[tag]

    def _confirmed_tags(self, delivery_tag: int, multiple: bool) -> list[int]:
        if not multiple:
            return [delivery_tag] if delivery_tag in self._unconfirmed else []
        # Tags enter the dict in increasing order, so the confirmed ones are its head.
        return list(itertools.takewhile(lambda tag: tag <= delivery_tag, self._unconfirmed))

    def on_return(self, _channel: Channel, method: pika.spec.Basic.Return, properties: pika.BasicProperties, _body: bytes) -> None:
        """A ``mandatory`` request no queue took: fail it now with the broker's reason."""
        self._finish(
            properties.correlation_id,
            error=UnroutableError(
                f"request unroutable: exchange {method.exchange!r} has no queue bound for {method.routing_key!r} "
                f"({method.reply_code} {method.reply_text})"
            ),
        )

    def on_reply(self, channel: Channel, method: pika.spec.Basic.Deliver, properties: pika.BasicProperties, body: bytes) -> None:
        if not self.direct:
            # Acked on arrival: from here the reply is this process's (the future or the orphan log).
            # The replies of one socket read are acked together, with one multiple=True ack right
            # after it (a timer of 0 s runs on the loop's next turn).
            self._reply_ack = (channel, method.delivery_tag)
            if not self._reply_ack_scheduled:
                self._reply_ack_scheduled = True
                self._ioloop.call_later(0, self._ack_replies)
        correlation_id = properties.correlation_id
        with self._lock:
            request = self._pending.get(correlation_id) if correlation_id else None
        if request is None:
            if correlation_id and correlation_id.startswith(self._id_prefix):
                self._stats.duplicate_replies += 1
                logger.info("Dropped a late or duplicate reply", extra={"CORRELATION_ID": correlation_id})
            else:
                self._stats.orphaned_replies += 1
                logger.warning(
                    "Dropped an orphaned reply on %s (no request of this producer instance is waiting for it)",
                    self.reply_queue, extra={"CORRELATION_ID": correlation_id or "-"},
                )
            return
        ok, value = decode_reply(properties, body)
        if ok:
            self._finish(correlation_id, result=value)
        else:
            self._finish(correlation_id, error=value)

    def _ack_replies(self) -> None:
        """Ack every reply received up to the latest one (on its channel, if still open)."""
        self._reply_ack_scheduled = False
        if self._reply_ack is None:
            return
        (channel, delivery_tag), self._reply_ack = self._reply_ack, None
        if channel.is_open:
            channel.basic_ack(delivery_tag, multiple=True)

    def _expire_deadlines(self) -> None:
        now = time.monotonic()
        deadlines = self._deadlines
        if len(deadlines) > 4 * len(self._pending) + 1024:
            # Answered requests leave their entries behind; rebuild so the heap stays bounded.
            with self._lock:
                live = [(r.deadline, next(self._deadline_seq), r.correlation_id) for r in self._pending.values() if r.published]
            heapq.heapify(live)
            self._deadlines = deadlines = live
        while deadlines and deadlines[0][0] <= now:
            _, _, correlation_id = heapq.heappop(deadlines)
            self._finish(correlation_id, error=RequestTimeout(f"no reply within the request's deadline (correlation id {correlation_id})"))
        if self._outbox and self._channel is None:
            # Not connected: requests never published still time out on their own deadline.
            for request in list(self._outbox):
                if request.deadline <= now:
                    self._finish(request.correlation_id, error=RequestTimeout("broker unreachable until the request's deadline"))

    def _finish(self, correlation_id: str | None, *, result: bytes | None = None, error: BaseException | None = None) -> None:
        """Resolve one request's future exactly once and free its in-flight slot."""
        if correlation_id is None:
            return
        with self._lock:
            request = self._pending.pop(correlation_id, None)
            if request is not None and not self._pending:
                self._drained.notify_all()
        if request is None:
            return
        self._slots.release()
        elapsed = time.monotonic() - request.submitted
        if error is None:
            self._stats.answered += 1
            metrics.reply_received(elapsed, "ok")
            request.future.set_result(result)
            return
        if isinstance(error, RemoteError):
            self._stats.remote_errors += 1
            metrics.reply_received(elapsed, "error")
        elif isinstance(error, RequestTimeout):
            self._stats.timeouts += 1
            metrics.reply_received(elapsed, "timeout")
        else:
            self._stats.failed += 1
            metrics.request_failed(error)
        request.future.set_exception(error)

    def _fail_all(self, error: BaseException) -> None:
        for request in self._pending_snapshot():
            self._finish(request.correlation_id, error=error)
