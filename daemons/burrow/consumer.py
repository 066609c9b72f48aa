"""The consumer: runs each service's handler on its requests in that service's worker pool and
answers each one exactly once per delivery, acknowledging a request only after the broker
confirmed its reply.

Two connections share one I/O thread: one consumes requests, every served service
(:mod:`burrow.services`) registered on its own queue through its own :class:`RequestWindow`; one
publishes replies with publisher confirms (:class:`ReplyPublisher`). Each service's handlers run in
its own :class:`HandlerPool` (:class:`~burrow.serving.ServedService`), so a handler that runs for
minutes never starves heartbeats nor another service's requests; workers hand their :class:`Outcome`
to the I/O thread and never touch a channel. Malformed or stale requests are rejected to the
dead-letter queue with a logged reason (:meth:`Consumer._dead_letter`); when the request says where
to answer, its caller first gets a rejection notice (confirmed by the broker before the request is
rejected), so it fails at once instead of at its deadline. If the consuming channel is lost after a
handler ran, the request is redelivered (flagged ``redelivered``) and the producer drops the
duplicate reply: at least once, nothing lost.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from typing import Callable, Mapping

import pika
import pika.spec
from pika.channel import Channel

from burrow import metrics
from burrow.amqp.acks import AckBatcher
from burrow.amqp.iothread import IOThread
from burrow.amqp.queuestats import QueueCount, QueueStats
from burrow.amqp.replies import ReplyPublisher
from burrow.amqp.setup import BrokerLink, RabbitMQSetup
from burrow.config import BurrowConfig
from burrow.handlers import Handler, RequestContext, load_handler
from burrow.protocol import REJECT_STALE, Outcome, Rejection, unroutable_reply, validate_request
from burrow.services import served
from burrow.serving import Delivery, ServedService, serve
from burrow.stats import ConsumerStats

logger = logging.getLogger(__name__)
#: Seconds between two looks at the service queues' depth and consumers (STATUS=, metrics).
QUEUE_STATS_INTERVAL = 5.0


class Consumer:
    """Consume the requests of every served service, run its handler on them, publish replies, ack.

    The constructor loads the handlers (raising :class:`~burrow.errors.HandlerLoadError` at once
    when one is wrong); ``handlers`` maps service names to handlers to use instead of loading
    theirs (``handler`` alone: the first service's). :meth:`start` starts the I/O thread,
    :meth:`wait_ready` waits for the subscriptions, :meth:`stop` drains.
    """

    def __init__(self, config: BurrowConfig, *, handler: Handler | None = None,
                 handlers: Mapping[str, Handler] | None = None, name: str = "consumer") -> None:
        self._config = config
        self._settings = config.consumer
        services = served(self._settings)
        given = dict(handlers or {})
        if handler is not None:
            given.setdefault(services[0][0], handler)
        self._io = IOThread(f"burrow-{name}-io")
        # a wrong handler fails here, at once
        handlers = {service_name: given.get(service_name) or load_handler(service.handler)
                    for service_name, service in services}
        self._services = serve(config.topology, self._settings, services, handlers, self._replies_put)
        for service in self._services:
            service.registrations.bind(functools.partial(self.on_request, service), self._release)
        self._pools = list({id(service.workers): service.workers for service in self._services}.values())
        self._queue_stats = QueueStats({service.label: service.queue for service in self._services})
        self._consume = RabbitMQSetup(
            config.rabbitmq, config.topology, self._io.ioloop,
            role=f"{name}-consume", on_ready=self.on_consume_channel_ready, on_lost=self.on_consume_lost,
            services=tuple(service_name for service_name, _service in services),
            partitions={service_name: service.partitions for service_name, service in services},
        )
        self._replies: ReplyPublisher[Delivery] = ReplyPublisher(
            self._io.ioloop, config.topology.reply_exchange, on_ready=self._maybe_start_consuming, on_confirmed=self._settle,
            on_acked=lambda: self._publish.publish_acked(), on_nacked=lambda: self._publish.publish_nacked(),
            reply_queue_prefix=config.topology.reply_queue_prefix,
        )
        self._publish = RabbitMQSetup(
            config.rabbitmq, config.topology, self._io.ioloop,
            role=f"{name}-publish", on_ready=self._replies.on_channel_ready, on_lost=self.on_publish_lost,
            declare=False, unconfirmed=lambda: self._replies.unconfirmed,
        )
        # I/O-thread state.
        self._consume_channel: Channel | None = None
        self._generation = 0
        self._acks = AckBatcher()
        self._in_flight = 0
        self._draining = False
        self._ready = threading.Event()
        self._drained = threading.Event()
        self._stopped = threading.Event()
        self._stats = ConsumerStats()

    # ----------------------------------------------------------------- public API (any thread)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def concurrency(self) -> int:
        """Handler threads over every service."""
        return sum(pool.workers for pool in self._pools)

    @property
    def services(self) -> list[str]:
        """The names of the services served, the default one as ``default``."""
        return list(dict.fromkeys(service.name for service in self._services))

    def service_queues(self) -> dict[str, QueueCount]:
        """Each service's queue: ready requests and consumers, as the broker last said (any thread)."""
        return self._queue_stats.latest

    def _replies_put(self, delivery: Delivery) -> None:
        """Worker or loop thread: time the request (adaptive window), count a pool's rejection, reply."""
        delivery.finished_at = time.monotonic()
        if delivery.outcome is not None and (code := delivery.outcome.rejected) is not None:
            self._io.call_soon(functools.partial(self._count_dead_letter, code))
        self._replies.put(delivery)

    def _count_dead_letter(self, code: str) -> None:
        """I/O thread: one request more dead-lettered for ``code`` in :meth:`stats` and the metrics."""
        self._stats.dead_lettered += 1
        self._stats.stale += code == REJECT_STALE
        metrics.dead_lettered(code)

    @property
    def reconnects(self) -> int:
        return self._consume.reconnects + self._publish.reconnects

    def broker_links(self) -> list[BrokerLink]:
        """The broker nodes the consuming and the publishing connection use, and their failovers."""
        return [self._consume.link(), self._publish.link()]

    def stats(self) -> ConsumerStats:
        return dataclasses.replace(self._stats)

    def start(self) -> "Consumer":
        """Start the I/O thread, which connects and keeps reconnecting; see :meth:`wait_ready`."""
        self._io.start(self._connect)
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until both connections are up and every service is registered on its queue."""
        return self._ready.wait(timeout)

    def add_periodic(self, interval: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on the I/O thread every ``interval`` seconds (watchdog pings, status)."""
        self._io.call_every(interval, fn)

    def set_concurrency(self, workers: int) -> None:
        """Resize the worker pools and prefetch windows of the services without a concurrency of
        their own (SIGHUP reload of ``consumer.concurrency``); running handlers finish."""
        if workers < 1:
            raise ValueError("concurrency must be at least 1")

        def apply() -> None:
            for service in self._services:
                if not service.follows_consumer:
                    continue
                if service.workers.workers != workers:  # partitions of one service share one pool
                    service.workers.resize(workers)
                if service.adaptive is not None:
                    service.adaptive.reset(service.configured_prefetch())
                if not service.window.probation:
                    self._apply_window(service)
                logger.info("Service %s concurrency is now %d (prefetch %d)", service.name, workers, service.prefetch())

        self._io.call_soon(apply)

    def stop(self, timeout: float | None = None) -> bool:
        """Drain and disconnect: cancel the consumer, let in-flight handlers finish, publish their
        replies and ack, then close both connections. Returns False if the drain hit ``timeout``
        (unacked requests then go back to the queue when the connection closes)."""
        if self._stopped.is_set():
            return True
        seconds = self._settings.shutdown_timeout if timeout is None else timeout
        drained = True
        if self._io.is_alive():
            self._io.call_soon(self._begin_drain)
            drained = self._drained.wait(seconds)
            if not drained:
                logger.warning("Drain timed out after %.1fs with %d requests in flight; they will be redelivered",
                               seconds, self._in_flight)
            self._io.call_soon(self._close_connections)
            self._io.join(timeout=10)
        for pool in self._pools:
            pool.shutdown()
        self._stopped.set()
        return drained

    # ----------------------------------------------------------------- I/O thread: lifecycle

    def _connect(self) -> None:
        self._publish.start()
        self._consume.start()
        self._io.call_every(QUEUE_STATS_INTERVAL, self._poll_queues)

    def _poll_queues(self) -> None:
        channel = self._consume_channel
        if channel is not None and channel.is_open and not self._draining:
            self._queue_stats.poll(channel.connection)

    def on_publish_lost(self, reason: str) -> None:
        self._replies.on_channel_lost(reason)
        self._ready.clear()

    def on_consume_channel_ready(self, channel: Channel) -> None:
        self._generation += 1
        self._consume_channel = channel
        self._acks.reset()
        for service in self._services:
            service.restart()
        self._maybe_start_consuming()

    def _maybe_start_consuming(self) -> None:
        """Register every service on its queue once both channels are usable (and not draining)."""
        channel = self._consume_channel
        if channel is None or not channel.is_open or not self._replies.ready or self._draining:
            return
        for service in self._services:
            if not service.registrations.active:
                service.registrations.resize(channel, service.window.size(), functools.partial(self.on_consume_ok, service))
        self._check_ready()

    def _apply_window(self, service: ServedService) -> None:
        """Move the service's window to its size now (:mod:`burrow.amqp.registrations`: by
        registering or retiring consumers, so that no request goes back to the queue for it)."""
        channel = self._consume_channel
        if channel is None or not channel.is_open or not service.registrations.active or self._draining:
            return
        service.registrations.resize(channel, service.window.size(), lambda: logger.debug(
            "Request window of service %s is now %d", service.name, service.prefetch()))

    def on_consume_ok(self, service: ServedService) -> None:
        service.registered = True
        self._check_ready()

    def _check_ready(self) -> None:
        """Ready once every service's consumer is registered (logged the first time per channel)."""
        if self._ready.is_set() or not all(service.registered for service in self._services):
            return
        logger.info("Consumer ready: %s", "; ".join(service.describe() for service in self._services))
        self._ready.set()

    def on_consume_lost(self, _reason: str) -> None:
        self._consume_channel = None
        for service in self._services:
            service.restart()  # settlements waiting for a cancel-ok are void: the broker redelivers
        self._ready.clear()
        self._check_drained()

    # ----------------------------------------------------------------- I/O thread: requests

    def on_request(self, service: ServedService, channel: Channel, method: pika.spec.Basic.Deliver,
                   properties: pika.BasicProperties, body: bytes) -> None:
        """Validate one request of ``service`` and hand it to its worker pool, or dead-letter it."""
        self._stats.received += 1
        metrics.request_received()
        if method.redelivered:
            self._stats.redelivered += 1
        service.registrations.delivered(channel, method.consumer_tag)
        if service.window.on_delivery(bool(method.redelivered)):
            self._apply_window(service)
        rejection = validate_request(properties, body, max_message_bytes=self._settings.max_message_bytes,
                                     content_types=self._settings.content_types, now=time.time())
        context = RequestContext(correlation_id=properties.correlation_id, message_id=properties.message_id,
                                 redelivered=bool(method.redelivered), headers=dict(properties.headers or {}),
                                 content_type=properties.content_type)
        delivery = Delivery(service, method.delivery_tag, self._generation, properties.reply_to, context, body,
                            consumer_tag=method.consumer_tag)
        if rejection is not None:
            self._dead_letter(channel, delivery, rejection)
            return
        self._in_flight += 1
        self._acks.received(method.delivery_tag)
        service.workers.submit(delivery)

    def _dead_letter(self, channel: Channel, delivery: Delivery, rejection: Rejection, *, tell_caller: bool = True) -> None:
        """Reject the request to the dead-letter queue; first tell its caller why, if it can be told.

        A request with a reply address and a correlation id gets a rejection notice through the
        reply path like any answer, and is rejected once the broker confirmed the notice (see
        :meth:`_settle`), so its caller learns the reason at once. Others (and, with
        ``tell_caller=False``, those whose reply address is gone) are rejected now.
        """
        self._count_dead_letter(rejection.code)
        logger.warning(
            "Dead-lettering request: %s", rejection.reason,
            extra={"CORRELATION_ID": delivery.correlation_id or "-", "MESSAGE_ID": delivery.context.message_id or "-",
                   "TRACE_ID": delivery.context.trace_id,
                   "QUEUE": delivery.service.queue, "SERVICE": delivery.service.name, "REASON": rejection.code},
        )
        if not (tell_caller and delivery.reply_to and delivery.correlation_id):
            if channel.is_open and delivery.service.registrations.may_settle(delivery.consumer_tag, (delivery, True)):
                self._acks.rejected(delivery.delivery_tag)
                channel.basic_reject(delivery.delivery_tag, requeue=False)
            elif channel.is_open:
                self._acks.received(delivery.delivery_tag)  # no multiple ack may cover it meanwhile
            return
        delivery.outcome = Outcome.rejection(rejection)
        self._in_flight += 1
        self._acks.received(delivery.delivery_tag)
        self._replies.publish(delivery)

    # ----------------------------------------------------------------- I/O thread: acks

    def _settle(self, deliveries: list[Delivery]) -> None:
        """Their replies are safe at the broker: ack the requests (dead-letter those whose reply bounced).

        Bounced ones are rejected first, the rest acked in as few frames as :class:`AckBatcher`
        allows. A request from an older channel is left alone: the broker redelivers it and the
        producer drops the duplicate reply.
        """
        self._adapt(deliveries)
        self._in_flight -= len(deliveries)
        channel = self._consume_channel
        usable = channel is not None and channel.is_open
        acks = []
        for delivery in deliveries:
            if delivery.outcome is not None and delivery.outcome.error_type is not None:
                self._stats.handler_errors += 1
            if not usable or delivery.generation != self._generation:
                logger.debug("Request's channel is gone; the broker redelivers it and the duplicate reply is dropped",
                             extra={"CORRELATION_ID": delivery.correlation_id})
            elif delivery.outcome is not None and delivery.outcome.rejected is not None:
                if delivery.service.registrations.may_settle(delivery.consumer_tag, (delivery, True)):
                    self._acks.rejected(delivery.delivery_tag)
                    channel.basic_reject(delivery.delivery_tag, requeue=False)  # its caller has been told
            elif delivery.returned:
                topology = self._config.topology
                rejection = unroutable_reply(delivery.reply_to, delivery.returned, reply_exchange=topology.reply_exchange,
                                             reply_queue_prefix=topology.reply_queue_prefix)
                self._dead_letter(channel, delivery, rejection, tell_caller=False)
            else:
                logger.debug("Handled request", extra={"CORRELATION_ID": delivery.correlation_id,
                                                       "HANDLER": delivery.service.config.handler,
                                                       "TRACE_ID": delivery.context.trace_id})
                self._stats.processed += 1
                if delivery.service.registrations.may_settle(delivery.consumer_tag, (delivery, False)):
                    acks.append(delivery.delivery_tag)
        self._acks.ack(channel, acks)
        self._check_drained()

    def _release(self, waiting: list[tuple[Delivery, bool]]) -> None:
        """A retired consumer's cancel-ok: send the acks and rejections (True) that waited for it."""
        channel = self._consume_channel
        if channel is None or not channel.is_open:
            return
        for delivery, reject in waiting:
            if reject:
                self._acks.rejected(delivery.delivery_tag)
                channel.basic_reject(delivery.delivery_tag, requeue=False)
        self._acks.ack(channel, [delivery.delivery_tag for delivery, reject in waiting if not reject])
        self._check_drained()

    def _adapt(self, deliveries: list[Delivery]) -> None:
        """Feed the replies' confirm latency to the services' adaptive windows; register a service
        again when its window moves."""
        now = time.monotonic()
        for delivery in deliveries:
            if delivery.service.adaptive is not None and delivery.finished_at:
                delivery.service.adaptive.observe(now - delivery.finished_at, self._in_flight)
        for service in self._services:
            if service.adaptive is not None and service.adaptive.decide(now) is not None and not service.window.probation:
                self._apply_window(service)

    # ----------------------------------------------------------------- I/O thread: shutdown

    def _begin_drain(self) -> None:
        """Step 1 of shutdown: stop new deliveries; requests already received still get answered."""
        self._draining = True
        self._ready.clear()
        channel = self._consume_channel
        for service in self._services:
            for tag in service.registrations.tags if channel is not None and channel.is_open else []:
                channel.basic_cancel(tag)
        self._check_drained()

    def _check_drained(self) -> None:
        if self._draining and self._in_flight == 0 and not any(s.registrations.waiting for s in self._services):
            self._drained.set()

    def _close_connections(self) -> None:
        """Step 2 of shutdown: close both connections, then stop the I/O loop."""
        self._io.stop_after([self._consume, self._publish])
