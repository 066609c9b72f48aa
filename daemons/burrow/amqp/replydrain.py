"""The producer's reply queue (``ReplyQueues``) and the drain of the other queues its instance used.

A producer's reply queue is ``<prefix>.<id>.classic`` or ``<prefix>.<id>.quorum`` (:mod:`burrow.topology`).
Replies may wait in another queue of the same instance: the other type's, when the type changed
(``reply_queue_type = "auto"`` and a host list that grew from one node to three, applied live by
:meth:`burrow.producer.Producer.use_brokers` on a SIGHUP reload: requests published before name the
old queue as ``reply_to``), or ``<prefix>.<id>``, the classic queue earlier releases declared, after
an upgrade. So on its first connection, and on every fresh connection after a switch, the producer
drains each of them that may still be there:

1. open a channel of its own (a passive declare of a queue that is not there closes its channel,
   and that must not be the publishing one) and passively declare the queue; not there means
   nothing to drain, and the drain is done;
2. consume it with manual acks, handing every reply to the producer's reply matching, so an
   answer to a request still pending resolves its future as if it came on the new queue (after a
   restart none is pending: each reply is logged as orphaned, with its correlation id, as on the
   producer's own queue);
3. every :data:`CHECK_INTERVAL` seconds ask the broker how many replies wait there; once none does
   and no request published before the switch is still pending, unbind the queue from the reply
   exchange (a reply still coming now goes back to the consumer as unroutable, which dead-letters
   its request: nobody waits for it), count again, cancel the consumer and count once more: with
   no reply and no consumer left, delete the queue. A consumer the broker still keeps for a
   connection of the old run (it may hold replies unacked, and gives them back when the broker
   drops it) keeps the drain going. ``if-empty``/``if-unused`` would say the same, but quorum queues
   refuse both with a connection error (540 NOT_IMPLEMENTED on RabbitMQ 3.10). An earlier release
   consumed its queue exclusively: while the broker still holds that consumer the drain's consume is
   refused (ACCESS_REFUSED) and it starts over after :data:`RETRY_INTERVAL`.

A connection lost in between leaves the queue and the pending requests as they are; the next
channel-ready starts the drain again.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Iterable
from typing import Any, Callable

import pika.exceptions
import pika.frame
import pika.spec
from pika.adapters.select_connection import IOLoop
from pika.channel import Channel

from burrow.config import BurrowConfig, RabbitMQConfig
from burrow.topology import DIRECT_REPLY_TO, reply_queue_name, reply_queue_names, with_reply_queue_type

logger = logging.getLogger(__name__)


#: Seconds between two looks at the old queue's depth while draining it.
CHECK_INTERVAL = 0.2
#: Seconds before a drain starts over after the broker refused its consume.
RETRY_INTERVAL = 1.0
#: AMQP reply codes: the queue is consumed exclusively by another connection; it is not there.
ACCESS_REFUSED = 403
NOT_FOUND = 404

ReplyHandler = Callable[[pika.BasicProperties, bytes], None]


class _ExpectedNotFound(logging.Filter):
    """Drops pika's WARNING for a drain channel the broker closed with 404 NOT_FOUND.

    pika logs every channel the broker closes as a warning. For a drain, "no such queue" is the
    usual answer to its passive declare (there is nothing left to drain), so every producer start
    would put two warnings in the journal for a normal event; :meth:`ReplyQueueDrain._on_channel_closed`
    logs it at DEBUG instead. Any other close, and any close of another channel, still warns.
    """

    def __init__(self) -> None:
        super().__init__()
        self.channels: weakref.WeakSet[Channel] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 3 and args[0] == NOT_FOUND:
            try:
                return args[2] not in self.channels
            except TypeError:
                return True
        return True


_EXPECTED_NOT_FOUND = _ExpectedNotFound()
logging.getLogger("pika.channel").addFilter(_EXPECTED_NOT_FOUND)


class ReplyQueueDrain:
    """Drains ``queue`` (bound to ``exchange``) into ``on_reply`` while ``pending()`` or replies
    remain; I/O thread only.

    ``on_done`` is called once the queue is gone (deleted here or never there), so the owner stops
    starting drains on later connections.
    """

    def __init__(self, ioloop: IOLoop, queue: str, exchange: str, *, on_reply: ReplyHandler,
                 pending: Callable[[], bool], on_done: Callable[[], None]) -> None:
        self.queue = queue
        self._exchange = exchange
        self._ioloop = ioloop
        self._on_reply = on_reply
        self._pending = pending
        self._on_done = on_done
        self._connection: pika.SelectConnection | None = None
        self._channel: Channel | None = None
        self._consumer_tag: str | None = None
        self._unbound = False
        self._timer: Any = None
        self.drained = 0
        self.done = False

    def start(self, connection: pika.SelectConnection) -> None:
        """Step 1: a channel of its own on the producer's fresh connection."""
        self._connection = connection
        connection.channel(on_open_callback=self._on_channel_open)

    def stop(self) -> None:
        """Stop looking at the queue (the producer is closing); the broker keeps what is left."""
        if self._timer is not None:
            self._ioloop.remove_timeout(self._timer)
            self._timer = None

    def _on_channel_open(self, channel: Channel) -> None:
        self._channel = channel
        _EXPECTED_NOT_FOUND.channels.add(channel)
        channel.add_on_close_callback(self._on_channel_closed)
        channel.queue_declare(self.queue, passive=True, callback=self._on_found)

    def _on_found(self, frame: pika.frame.Method) -> None:
        """Step 2: the old queue is there; consume it."""
        logger.info("Draining reply queue %s, no longer this producer's: %d replies waiting",
                    self.queue, frame.method.message_count)
        self._consume()

    def _consume(self) -> None:
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        self._consumer_tag = channel.basic_consume(self.queue, self._on_message, auto_ack=False)
        self._timer = self._ioloop.call_later(CHECK_INTERVAL, self._check)

    def _on_message(self, channel: Channel, method: pika.spec.Basic.Deliver, properties: pika.BasicProperties,
                    body: bytes) -> None:
        self.drained += 1
        self._on_reply(properties, body)
        channel.basic_ack(method.delivery_tag)

    def _check(self) -> None:
        """Step 3: count the replies still waiting."""
        self._timer = None
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        channel.queue_declare(self.queue, passive=True, callback=self._on_count)

    def _on_count(self, frame: pika.frame.Method) -> None:
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        if frame.method.message_count or self._pending():
            self._timer = self._ioloop.call_later(CHECK_INTERVAL, self._check)
        elif not self._unbound:
            # Nobody waits for a reply there any more: let no new one in (a late one comes back
            # to the consumer as unroutable), then count once more.
            channel.queue_unbind(self.queue, self._exchange, routing_key=self.queue, callback=self._on_unbound)
        else:
            channel.basic_cancel(self._consumer_tag, callback=lambda _frame: self._recount(channel))

    def _on_unbound(self, _frame: pika.frame.Method) -> None:
        self._unbound = True
        self._check()

    def _recount(self, channel: Channel) -> None:
        """Our consumer is gone: empty, and no consumer holding replies unacked, or drain on."""
        if channel.is_open:
            channel.queue_declare(self.queue, passive=True, callback=lambda frame: self._delete(channel, frame))

    def _delete(self, channel: Channel, frame: pika.frame.Method) -> None:
        if not channel.is_open:
            return
        if frame.method.message_count or frame.method.consumer_count:
            logger.debug("Reply queue %s: %d replies, %d consumers after the drain's cancel; draining on",
                         self.queue, frame.method.message_count, frame.method.consumer_count)
            self._consume()
            return
        # No if-empty/if-unused: quorum queues refuse both with a connection error (540), and
        # nothing can enter an unbound queue that is empty and has no consumer.
        channel.queue_delete(self.queue, callback=lambda _frame: self._deleted(channel))

    def _deleted(self, channel: Channel) -> None:
        logger.info("Drained reply queue %s (%d replies taken) and deleted it",
                    self.queue, self.drained)
        self._finish()
        channel.close()

    def _finish(self) -> None:
        if not self.done:
            self.done = True
            self._on_done()

    def _on_channel_closed(self, _channel: Channel, reason: BaseException) -> None:
        self._channel = None
        self.stop()
        code = reason.reply_code if isinstance(reason, pika.exceptions.ChannelClosedByBroker) else None
        connection = self._connection
        if code == NOT_FOUND:
            logger.debug("No reply queue %s to drain", self.queue)
            self._finish()
        elif code == ACCESS_REFUSED and connection is not None and connection.is_open:
            logger.info("Reply queue %s still in use (%s); draining it again in %.0fs", self.queue, reason,
                        RETRY_INTERVAL)
            self._timer = self._ioloop.call_later(RETRY_INTERVAL, lambda: self._retry(connection))

    def _retry(self, connection: pika.SelectConnection) -> None:
        self._timer = None
        if connection.is_open:
            self.start(connection)


class ReplyQueues:
    """The producer's reply queue for its broker nodes, and the drains of its instance's other queues.

    ``name`` and ``type`` are the queue requests name as ``reply_to`` now; ``topology`` is the
    configured one with that type resolved (what the connection declares). The producer calls
    :meth:`on_ready` on every fresh connection, :meth:`switch` when its nodes change and
    :meth:`stop` when it closes; all on the I/O thread. ``is_pending(correlation_id)`` says whether
    a request is still waiting for its reply.
    """

    def __init__(self, config: BurrowConfig, instance_id: str, ioloop: IOLoop, *, on_reply: ReplyHandler,
                 is_pending: Callable[[str], bool]) -> None:
        self._configured = config.topology
        self._instance_id = instance_id
        self._ioloop = ioloop
        self._on_reply = on_reply
        self._is_pending = is_pending
        self._direct = config.producer.reply_mode == "direct"
        self.topology = with_reply_queue_type(config.topology, config.rabbitmq)
        self.type = "direct" if self._direct else self.topology.reply_queue_type
        self.name = DIRECT_REPLY_TO if self._direct else reply_queue_name(self.topology, instance_id)
        self._before_switch: set[str] = set()
        self._drains: list[ReplyQueueDrain] = []
        #: The other queues of this instance that may still hold replies (module docstring).
        self._to_drain: set[str] = set() if self._direct else set(reply_queue_names(self.topology, instance_id)) - {self.name}

    def switch(self, rabbitmq: RabbitMQConfig, published: Iterable[str]) -> None:
        """Use the reply queue type ``rabbitmq``'s nodes call for; the ``published`` requests
        (pending, already sent) keep their replies on the old queue, drained on the next connect."""
        self.topology = with_reply_queue_type(self._configured, rabbitmq)
        if self._direct or self.topology.reply_queue_type == self.type:
            return
        self._before_switch.update(published)
        old, self.name = self.name, reply_queue_name(self.topology, self._instance_id)
        self.type = self.topology.reply_queue_type
        self._to_drain.add(old)
        self._to_drain.discard(self.name)
        logger.info("Reply queue type now %s for %d broker nodes: replying on %s; draining %s of the replies "
                    "to %d requests in flight", self.type, len(rabbitmq.nodes()), self.name, old,
                    len(self._before_switch))

    def on_ready(self, connection: pika.SelectConnection) -> None:
        """A fresh connection: drain each other queue of this instance not yet known to be gone."""
        self.stop()
        self._drains = [ReplyQueueDrain(self._ioloop, queue, self.topology.reply_exchange, on_reply=self._on_reply,
                                        pending=self._waiting, on_done=functools.partial(self._done, queue))
                        for queue in sorted(self._to_drain)]
        for drain in self._drains:
            drain.start(connection)

    def stop(self) -> None:
        for drain in self._drains:
            drain.stop()

    def _waiting(self) -> bool:
        self._before_switch = {cid for cid in self._before_switch if self._is_pending(cid)}
        return bool(self._before_switch)

    def _done(self, queue: str) -> None:
        self._to_drain.discard(queue)
        if not self._to_drain:
            self._before_switch.clear()
