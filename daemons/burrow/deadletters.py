"""The dead-letter watcher: tells a caller at once that the broker dead-lettered its request.

A request that no consumer ever finished (it crashed or stalled every consumer that took it) is
dead-lettered by the broker once the request queue's delivery limit is reached, and its caller
would otherwise wait until its deadline for an answer that cannot come. The dead-letter exchange
copies every dead letter to two queues: the dead-letter queue, where it stays for operators
(``burrow dead``), and the notice queue that this watcher consumes. For each copy of a request past
the delivery limit, the watcher publishes a rejection notice to the request's ``reply_to`` with its
correlation id (the caller's future fails with :class:`~burrow.errors.DeliveryLimitExceeded`) and
acks the copy only once the broker confirmed the notice: at least once, so a notice may arrive
twice (the producer drops the second) but is never lost while the copy waits in its queue.

Copies of requests that a consumer rejected itself are acked without a notice (that consumer told
the caller already, when it could), and so are requests that expired in the queue (their caller's
deadline has passed). Every consumer daemon runs a watcher; several share the notice queue as
competing consumers.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

import pika
import pika.spec
from pika.channel import Channel

from burrow import metrics
from burrow.amqp.confirms import ConfirmTracker
from burrow.amqp.iothread import IOThread
from burrow.amqp.setup import RabbitMQSetup
from burrow.config import BurrowConfig
from burrow.protocol import (
    CONTENT_TYPE,
    HEADER_DELIVERY_COUNT,
    HEADER_DIED_AT,
    HEADER_FIRST_DEATH_QUEUE,
    HEADER_FIRST_DEATH_REASON,
    REJECT_DELIVERY_LIMIT,
    rejection_headers,
)
from burrow.topology import DIRECT_REPLY_TO

logger = logging.getLogger(__name__)

#: Copies held unacked at once; notices are rare, this only bounds a backlog after an outage.
PREFETCH = 32
#: The broker's reason for a request dead-lettered after its delivery limit.
DEATH_DELIVERY_LIMIT = "delivery_limit"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def death_summary(headers: dict[str, Any]) -> tuple[str, str, float | None]:
    """``(first death reason, first death queue, UNIX time of the first death)`` from the headers the
    broker adds to a dead letter (``x-first-death-*`` and the oldest ``x-death`` entry)."""
    reason = _text(headers.get("x-first-death-reason", ""))
    queue = _text(headers.get("x-first-death-queue", ""))
    deaths = headers.get("x-death")
    died_at = None
    if isinstance(deaths, list) and deaths and isinstance(deaths[-1], dict):
        moment = deaths[-1].get("time")
        if isinstance(moment, datetime):
            died_at = moment.timestamp()
    return reason, queue, died_at


class DeadLetterWatcher:
    """Consume the notice queue and answer the callers of requests past the delivery limit.

    :meth:`start` runs it on its own I/O thread and connection; :meth:`stop` closes the
    connection, which returns unacked copies to the queue for the next watcher.
    """

    def __init__(self, config: BurrowConfig, *, name: str = "deadletters") -> None:
        self._config = config
        self._topology = config.topology
        self._io = IOThread(f"burrow-{name}-io")
        self._setup = RabbitMQSetup(config.rabbitmq, config.topology, self._io.ioloop, role=name,
                                    on_ready=self.on_channel_ready, on_lost=self.on_channel_lost,
                                    unconfirmed=lambda: len(self._notices))
        self._channel: Channel | None = None
        # Each unconfirmed notice -> the delivery tag of the dead letter's copy it answers.
        self._notices: ConfirmTracker[int] = ConfirmTracker()
        self._ready = threading.Event()
        self.notices = 0

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def start(self) -> "DeadLetterWatcher":
        self._io.start(self._setup.start)
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the watcher consumes the notice queue."""
        return self._ready.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Close the connection; copies not yet acked go back to the notice queue."""
        if self._io.is_alive():
            self._io.call_soon(lambda: self._io.stop_after([self._setup]))
            self._io.join(timeout)

    # ----------------------------------------------------------------- I/O thread

    def on_channel_ready(self, channel: Channel) -> None:
        """Fresh channel, topology declared: confirms on, then the window, then consume."""
        channel.add_on_return_callback(self.on_notice_returned)
        channel.confirm_delivery(ack_nack_callback=self.on_notice_confirm,
                                 callback=lambda _frame: self.on_confirms_enabled(channel))

    def on_confirms_enabled(self, channel: Channel) -> None:
        self._channel = channel
        self._notices.reset()
        channel.basic_qos(prefetch_count=PREFETCH, callback=lambda _frame: channel.basic_consume(
            queue=self._topology.dead_letter_notice_queue, on_message_callback=self.on_dead_letter,
            callback=lambda _frame: self.on_consume_ok()))

    def on_consume_ok(self) -> None:
        logger.info("Dead-letter watcher ready on %s", self._topology.dead_letter_notice_queue)
        self._ready.set()

    def on_channel_lost(self, _reason: str) -> None:
        # Copies not acked return to the queue with the channel; their notices go out again.
        self._ready.clear()
        self._channel = None
        self._notices.reset()

    def on_dead_letter(self, channel: Channel, method: pika.spec.Basic.Deliver,
                       properties: pika.BasicProperties, _body: bytes) -> None:
        """One copy of a dead letter: notify its caller if the broker gave up on it, else ack."""
        reason, queue, died_at = death_summary(properties.headers or {})
        if reason != DEATH_DELIVERY_LIMIT or not (properties.reply_to and properties.correlation_id):
            channel.basic_ack(method.delivery_tag)
            return
        deliveries = self._topology.delivery_limit + 1
        explanation = (f"no consumer finished the request in {deliveries} deliveries (topology.delivery_limit "
                       f"{self._topology.delivery_limit}); the broker dead-lettered it to "
                       f"{self._topology.dead_letter_queue}")
        headers = {
            **rejection_headers(REJECT_DELIVERY_LIMIT),
            HEADER_DELIVERY_COUNT: deliveries,
            HEADER_FIRST_DEATH_REASON: reason,
            HEADER_FIRST_DEATH_QUEUE: queue,
        }
        if died_at is not None:
            headers[HEADER_DIED_AT] = int(died_at * 1000)
        direct = properties.reply_to.startswith(DIRECT_REPLY_TO)
        channel.basic_publish(
            "" if direct else self._topology.reply_exchange, properties.reply_to,
            explanation.encode(), pika.BasicProperties(
                content_type=CONTENT_TYPE, correlation_id=properties.correlation_id, headers=headers,
                delivery_mode=pika.DeliveryMode.Transient if direct else pika.DeliveryMode.Persistent),
            # As for the consumer's replies: RabbitMQ 3.10 returns direct reply-to publishes it delivers.
            mandatory=not direct,
        )
        self._notices.published(method.delivery_tag)
        self.notices += 1
        metrics.dead_letter_notice(REJECT_DELIVERY_LIMIT)
        logger.warning("Told the caller that its request was dead-lettered after %d deliveries", deliveries,
                       extra={"CORRELATION_ID": properties.correlation_id, "QUEUE": queue, "REASON": reason})

    def on_notice_returned(self, _channel: Channel, method: pika.spec.Basic.Return,
                           properties: pika.BasicProperties, _body: bytes) -> None:
        """Nobody waits at the reply address any more; the confirm that follows acks the copy."""
        logger.info("Dead-letter notice unroutable (%s): its caller is gone", method.reply_text,
                    extra={"CORRELATION_ID": properties.correlation_id or "-"})

    def on_notice_confirm(self, frame: pika.frame.Method) -> None:
        """The broker took (ack) or refused (nack) notices: ack their copies, or return them for a retry."""
        channel = self._channel
        method = frame.method
        nacked = isinstance(method, pika.spec.Basic.Nack)
        if nacked and self._setup.publish_nacked():
            return  # reconnecting: the copies return to the notice queue with the old channel
        if not nacked:
            self._setup.publish_acked()
        for copy_tag in self._notices.confirmed(method.delivery_tag, method.multiple):
            if channel is None or not channel.is_open:
                continue
            if nacked:
                channel.basic_nack(copy_tag, requeue=True)
            else:
                channel.basic_ack(copy_tag)
