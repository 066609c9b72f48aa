"""The producer: a thread-safe request/response client over RabbitMQ.

Caller threads call :meth:`Producer.submit` and get a ``concurrent.futures.Future``; they never
touch pika. One I/O thread owns the connection: it publishes queued requests (persistent,
``mandatory``, with publisher confirms and an AMQP expiration), matches replies by correlation id,
fails requests whose deadline passed, and after a connection loss reconnects and republishes every
request the broker had not confirmed. Requests the broker confirmed stay pending until their reply
or their deadline, because their reply will still reach the durable reply queue.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
import uuid
from types import TracebackType
from typing import Any

import pika.exceptions
import pika.frame
import pika.spec
from pika.channel import Channel

from burrow import metrics
from burrow.amqp.acks import ReplyAcks
from burrow.amqp.confirms import ConfirmTracker
from burrow.amqp.inbox import Inbox
from burrow.amqp.iothread import IOThread
from burrow.amqp.replydrain import ReplyQueues
from burrow.amqp.setup import BrokerLink, RabbitMQSetup
from burrow.config import BurrowConfig, RabbitMQConfig
from burrow.deadlines import RequestDeadlines
from burrow.errors import (
    Backpressure,
    BrokerUnavailable,
    PublishError,
    RequestTimeout,
    UnknownService,
    UnroutableError,
)
from burrow.inflight import InFlight, Request, RequestFuture, resolve
from burrow.protocol import decode_reply, request_properties
from burrow.partitions import check_key
from burrow.services import DEFAULT_SERVICE, check_name, routing_key
from burrow.stats import ProducerStats

logger = logging.getLogger(__name__)

DEADLINE_CHECK_INTERVAL = 0.05
#: The DEBUG record logged (with ``CORRELATION_ID``) for each request republished after a reconnect.
REPUBLISHED_MESSAGE = "Republishing request"


class Producer:
    """Send requests to the consumers and hand back their replies as futures.

    Use as a context manager, or call :meth:`start` and :meth:`stop` (``close`` is the same as
    :meth:`stop`, the name earlier releases used). ``instance_id`` names the
    durable reply queue; two live producers must not share one (the second one's consume is
    refused and it keeps retrying), so give each process its own stable id.
    """

    def __init__(self, config: BurrowConfig, *, instance_id: str | None = None, name: str = "producer") -> None:
        self._config = config
        settings = config.producer
        self.instance_id = instance_id or settings.resolved_instance_id()
        self.direct = settings.reply_mode == "direct"
        self._io = IOThread(f"burrow-{name}-io")
        self._replies = ReplyQueues(config, self.instance_id, self._io.ioloop, on_reply=self._take_reply,
                                    is_pending=lambda cid: self._in_flight.get(cid) is not None)
        self.reply_queue = self._replies.name
        #: "quorum" or "classic" (``topology.reply_queue_type`` resolved for the nodes), or "direct".
        self.reply_queue_type = self._replies.type
        self._request_timeout = settings.request_timeout
        self._max_message_bytes = settings.max_message_bytes
        self._in_flight = InFlight(settings.max_in_flight)
        self._outbox: Inbox[Request] = Inbox(self._io.ioloop, self._flush)
        # I/O-thread state: never touched by caller threads.
        self._confirms: ConfirmTracker[Request] = ConfirmTracker()
        self._deadlines = RequestDeadlines(self._in_flight)
        # Correlation ids are "<random prefix>-<counter>": unique without a uuid4() per request,
        # and a reply carrying this prefix whose request is no longer pending is a late or
        # duplicate one (answered, failed or timed out before), with no set of past ids to keep.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count(1)
        self._reply_acks = ReplyAcks(self._io.ioloop)
        self._channel: Channel | None = None
        self._ready = threading.Event()
        self._closing = False
        self._closed = threading.Event()
        self._stats = ProducerStats()
        self._setup = RabbitMQSetup(
            config.rabbitmq, self._replies.topology, self._io.ioloop, role=name, on_ready=self.on_channel_ready,
            on_lost=self.on_connection_lost, reply_queue=None if self.direct else self.reply_queue,
            unconfirmed=lambda: len(self._confirms),
        )

    # ----------------------------------------------------------------- public API (any thread)

    @property
    def connected(self) -> bool:
        """True while a channel is open, the topology declared and replies are being consumed."""
        return self._ready.is_set()

    @property
    def in_flight(self) -> int:
        """Requests submitted and not yet answered, failed or timed out."""
        return len(self._in_flight)

    @property
    def reconnects(self) -> int:
        return self._setup.reconnects

    def broker_links(self) -> list[BrokerLink]:
        """The broker node the connection uses and its failovers (STATUS, tests)."""
        return [self._setup.link()]

    def stats(self) -> ProducerStats:
        return dataclasses.replace(self._stats, submitted=self._in_flight.added, awaiting_confirm=len(self._confirms))

    def start(self, wait: float | None = None) -> "Producer":
        """Start the I/O thread; with ``wait``, block up to that many seconds for the first connect.

        Requests submitted before the broker is reachable wait in memory (bounded by
        ``max_in_flight``) and go out on connect, unless their deadline passes first.
        """
        self._io.start(self._connect)
        if wait is not None and not self._ready.wait(wait):
            logger.warning("Producer not connected after %.1fs; still retrying in the background", wait)
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until connected and consuming replies (``wait_connected`` is the older name)."""
        return self._ready.wait(timeout)

    wait_connected = wait_ready

    def submit(
        self,
        body: bytes,
        *,
        timeout: float | None = None,
        headers: dict[str, Any] | None = None,
        block: bool = True,
        service: str | None = None,
        key: str | None = None,
    ) -> RequestFuture:
        """Queue ``body`` as a request to ``service`` (``None``: the default service); the returned
        future resolves to the reply body.

        The future fails with :class:`RequestTimeout` after ``timeout`` seconds (default
        ``producer.request_timeout``), :class:`RemoteError` if the handler raised,
        :class:`Rejected` (or its :class:`DeliveryLimitExceeded`) as soon as burrow dead-letters it,
        :class:`UnknownService` at once when no queue serves ``service``,
        :class:`UnroutableError`/:class:`PublishError` if the broker refused it. Blocks while
        ``max_in_flight`` requests are outstanding, or raises :class:`Backpressure` if ``block`` is
        false. A ``service`` name that no service could have raises ``ValueError`` here. Requests
        with one ``key`` go to one partition of a split service (:mod:`burrow.partitions`), in order.
        """
        if self._closing or self._closed.is_set():
            raise BrokerUnavailable("producer is closed")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"request body must be bytes, not {type(body).__name__}")
        if len(body) > self._max_message_bytes:
            raise ValueError(f"request body of {len(body)} bytes exceeds producer.max_message_bytes ({self._max_message_bytes})")
        if service is not None:
            service = None if check_name(service) == DEFAULT_SERVICE else service
        check_key(key)
        if not self._in_flight.reserve(block):
            raise Backpressure(f"{self.in_flight} requests in flight (producer.max_in_flight)")
        if self._closing:
            self._in_flight.unreserve()
            raise BrokerUnavailable("producer is closed")
        seconds = self._request_timeout if timeout is None else timeout
        request = Request.create(f"{self._id_prefix}-{next(self._ids):x}", body, seconds, headers, service, key)
        self._in_flight.add(request)
        request.future.add_done_callback(self._on_cancelled)
        self._outbox.put(request)
        return request.future

    def call(self, body: bytes, *, timeout: float | None = None, headers: dict[str, Any] | None = None,
             service: str | None = None, key: str | None = None) -> bytes:
        """Send ``body`` to ``service`` and block for the reply; raises what :meth:`submit`'s future
        fails with (:class:`RequestTimeout`, :class:`RemoteError`, :class:`UnknownService`, ...)."""
        future = self.submit(body, timeout=timeout, headers=headers, service=service, key=key)
        seconds = self._request_timeout if timeout is None else timeout
        # The I/O thread fails the future at its deadline; the margin only guards against a dead loop.
        return future.result(timeout=seconds + 5.0)

    def use_brokers(self, rabbitmq: RabbitMQConfig) -> None:
        """Reconnect to the nodes of ``rabbitmq`` (a reload that changed ``rabbitmq.hosts``); any thread.

        When that changes the resolved reply queue type, new requests name the new type's queue
        and the old one is drained of the replies to those already published before it is let go
        (:mod:`burrow.amqp.replydrain`). Requests wait in memory while the connection moves.
        """
        self._io.call_soon(lambda: self._switch(rabbitmq))

    def _on_cancelled(self, future: RequestFuture) -> None:
        """A caller cancelled its future: the I/O thread frees the slot; a reply still coming is late."""
        if future.cancelled() and self._io.is_alive():
            self._io.call_soon(lambda: self._finish(future.correlation_id))

    def add_periodic(self, interval: float, fn: Any) -> None:
        """Run ``fn()`` on the I/O thread every ``interval`` seconds (watchdog pings, status)."""
        self._io.call_every(interval, fn)

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting requests, wait up to ``timeout`` seconds for in-flight replies, disconnect.

        Requests still unanswered then fail with :class:`BrokerUnavailable`; their replies, if any
        come later, stay in the durable reply queue and a restarted producer logs them as orphaned.
        """
        if self._closed.is_set():
            return
        self._closing = True
        seconds = self._config.producer.shutdown_timeout if timeout is None else timeout
        self._in_flight.wait_empty(time.monotonic() + seconds, self._io.is_alive)
        if self._io.is_alive():
            self._io.call_soon(self._shutdown)
            self._io.join(timeout=max(5.0, self._config.rabbitmq.socket_timeout))
        self._fail_all(BrokerUnavailable("producer closed before the reply arrived"))
        self._closed.set()

    close = stop

    def __enter__(self) -> "Producer":
        return self.start(wait=self._config.rabbitmq.socket_timeout)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # ----------------------------------------------------------------- I/O thread

    def _connect(self) -> None:
        self._setup.start()
        self._io.call_every(DEADLINE_CHECK_INTERVAL, self._expire_deadlines)

    def _shutdown(self) -> None:
        self._ready.clear()
        self._replies.stop()
        self._io.stop_after([self._setup])

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
            # Not exclusive: with single active consumer a consume beside our old connection waits.
            auto_ack=self.direct,
            callback=lambda _f: self.on_reply_consumer_ok(channel),
        )

    def on_reply_consumer_ok(self, channel: Channel) -> None:
        """Consuming replies: republish what the lost channel left unconfirmed, then go."""
        self._channel = channel
        resend = [r for r in self._confirms.reset() if not r.future.done()]
        if self.direct:
            # Replies to the old channel's direct reply-to address are gone: resend what is pending.
            resend = [r for r in self._in_flight.snapshot() if r.published and not r.future.done()]
        if resend:
            logger.info("Republishing %d requests not confirmed before the connection loss", len(resend))
            for request in resend:
                # One DEBUG record per request: a consumer may now run it twice without the
                # redelivered flag, and fault checks match such runs to these records by id.
                logger.debug(REPUBLISHED_MESSAGE, extra={"CORRELATION_ID": request.correlation_id})
            self._stats.republished += len(resend)
            self._outbox.put_back(resend)
        self._ready.set()
        logger.info("Producer %s ready: publishing to %s, replies on %s (%s)", self.instance_id,
                    self._config.topology.request_exchange, self.reply_queue, self.reply_queue_type)
        self._flush()
        self._replies.on_ready(channel.connection)

    def _switch(self, rabbitmq: RabbitMQConfig) -> None:
        """The I/O thread's half of :meth:`use_brokers`."""
        self._replies.switch(rabbitmq, [r.correlation_id for r in self._in_flight.snapshot() if r.published])
        self.reply_queue, self.reply_queue_type = self._replies.name, self._replies.type
        self._config = dataclasses.replace(self._config, rabbitmq=rabbitmq)
        self._setup.retarget(rabbitmq, self._replies.topology, None if self.direct else self.reply_queue)

    def on_connection_lost(self, reason: str) -> None:
        self._ready.clear()
        self._channel = None

    def _flush(self) -> None:
        """Publish everything queued by the caller threads (runs on the I/O thread)."""
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        exchange = self._config.topology.request_exchange
        request_queue = self._config.topology.request_queue
        now_wall = time.time()
        outbox = self._outbox
        while outbox:
            request = outbox.pop()
            if request.future.done():
                continue
            remaining_ms = int((request.wall_deadline - now_wall) * 1000)
            if remaining_ms <= 0:
                why = "the request's deadline passed before it could be published"
                self._finish(request.correlation_id, error=RequestTimeout(why, confirmed=request.confirmed))
                continue
            if not request.published:
                request.published = True
                self._deadlines.published(request)
            properties = request_properties(request.correlation_id, self.reply_queue, request.headers, remaining_ms, now_wall)
            try:
                key = request_queue if request.service is None else routing_key(request_queue, request.service)
                channel.basic_publish(exchange, key, request.body, properties, mandatory=True)
            except (pika.exceptions.AMQPChannelError, pika.exceptions.AMQPConnectionError) as exc:
                logger.warning("Publish failed (%s); the request will be resent after reconnecting", exc)
                outbox.put_back([request])
                return
            except Exception as exc:
                self._finish(request.correlation_id, error=PublishError(f"cannot publish the request: {exc}"))
                continue
            self._confirms.published(request)
            self._stats.published += 1
            metrics.request_sent()

    def on_confirm(self, frame: pika.frame.Method) -> None:
        """Broker ack/nack of published requests (``multiple`` covers every tag up to this one)."""
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack) and self._setup.publish_nacked():
            return  # reconnecting: they stay unconfirmed and are republished
        requests = self._confirms.confirmed(method.delivery_tag, method.multiple)
        if isinstance(method, pika.spec.Basic.Nack):
            for request in requests:
                self._finish(request.correlation_id, error=PublishError("the broker refused the request (nack): the request queue is full or unavailable"))
            return
        self._setup.publish_acked()
        for request in requests:
            # Also one whose deadline passed before this late ack: failed and counted then, marking it changes neither.
            request.confirmed = True

    def on_return(self, _channel: Channel, method: pika.spec.Basic.Return, properties: pika.BasicProperties, _body: bytes) -> None:
        """A ``mandatory`` request no queue took: fail it now with the broker's reason (for a named
        service: no consumer ever declared its queue, :class:`UnknownService`)."""
        request = self._in_flight.get(properties.correlation_id)
        why = (f"exchange {method.exchange!r} has no queue bound for {method.routing_key!r} "
               f"({method.reply_code} {method.reply_text})")
        if request is not None and request.service is not None:
            error: UnroutableError = UnknownService(request.service, f"unknown service {request.service!r}: no queue "
                                                                     f"serves it ({why})")
        else:
            error = UnroutableError(f"request unroutable: {why}")
        self._finish(properties.correlation_id, error=error)

    def on_reply(self, channel: Channel, method: pika.spec.Basic.Deliver, properties: pika.BasicProperties, body: bytes) -> None:
        if not self.direct:
            # Acked on arrival: from here the reply is this process's (the future or the orphan log).
            self._reply_acks.received(channel, method.delivery_tag)
        self._take_reply(properties, body)

    def _take_reply(self, properties: pika.BasicProperties, body: bytes) -> None:
        """Resolve the request a reply answers (from the reply queue or a drained old one), or log it."""
        correlation_id = properties.correlation_id
        if self._in_flight.get(correlation_id) is None:
            if correlation_id and correlation_id.startswith(self._id_prefix):
                self._stats.duplicate_replies += 1
                logger.info("Dropped a late or duplicate reply", extra={"CORRELATION_ID": correlation_id})
            else:
                self._stats.orphaned_replies += 1
                logger.warning("Dropped an orphaned reply on %s (no request of this producer instance is waiting for it)",
                               self.reply_queue, extra={"CORRELATION_ID": correlation_id or "-"})
            return
        ok, value = decode_reply(properties, body)
        if ok:
            self._finish(correlation_id, result=value)
        else:
            self._finish(correlation_id, error=value)

    def _expire_deadlines(self) -> None:
        """Fail every request whose deadline passed; without a connection, those waiting to be
        published too, which would otherwise wait for the next connection."""
        unsent = list(self._outbox) if self._channel is None else []
        for request, error in self._deadlines.expired(time.monotonic(), unsent):
            self._finish(request.correlation_id, error=error)

    def _finish(self, correlation_id: str | None, *, result: bytes | None = None, error: BaseException | None = None) -> None:
        """Resolve one request's future exactly once (unless its caller cancelled it) and free its slot."""
        request = self._in_flight.take(correlation_id)
        if request is not None:
            resolve(request, self._stats, result=result, error=error)

    def _fail_all(self, error: BaseException) -> None:
        for request in self._in_flight.snapshot():
            self._finish(request.correlation_id, error=error)
