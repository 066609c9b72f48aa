"""A producer's reply queue (``ReplyQueues``) and the drain of its queue of the other type (``ReplyQueueDrain``).

A producer's reply queue is ``<prefix>.<id>`` when classic and ``<prefix>.<id>.quorum`` when quorum
(:mod:`burrow.topology`). When its type changes (``reply_queue_type = "auto"`` and a host list that
grew from one node to three, applied live by :meth:`burrow.producer.Producer.use_brokers` on a
SIGHUP reload), requests published from then on name the new queue as ``reply_to``, but the
replies to requests published before still go to the old one. So on every fresh connection after
such a switch the producer drains the queue of the other type:

1. open a channel of its own (a passive declare of a queue that is not there closes its channel,
   and that must not be the publishing one) and passively declare the old queue; not there means
   nothing to drain, and the drain is done;
2. consume it with manual acks, handing every reply to the producer's reply matching, so an
   answer to a request still pending resolves its future as if it came on the new queue;
3. every :data:`CHECK_INTERVAL` seconds ask the broker how many replies wait there; once none does
   and no request published before the switch is still pending, cancel the consumer and delete the
   queue if it is still empty and unused (the broker's ``if-empty``/``if-unused``: a reply that
   slipped in after the count keeps the queue, and the drain starts over on a new channel).

A connection lost in between leaves the queue and the pending requests as they are; the next
channel-ready starts the drain again. A restart with the other type starts no drain: the replies
left in the old queue answer requests the stopped producer already failed, and the queue expires
``reply_queue_expires`` after its last consumer went away.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any, Callable

import pika.exceptions
import pika.frame
import pika.spec
from pika.adapters.select_connection import IOLoop
from pika.channel import Channel

from burrow.config import BurrowConfig, RabbitMQConfig
from burrow.topology import DIRECT_REPLY_TO, other_reply_queue_type, reply_queue_name, with_reply_queue_type

logger = logging.getLogger(__name__)

#: Seconds between two looks at the old queue's depth while draining it.
CHECK_INTERVAL = 0.2
#: AMQP reply codes: the queue is not there; the delete's if-empty/if-unused refused it.
NOT_FOUND = 404
PRECONDITION_FAILED = 406

ReplyHandler = Callable[[pika.BasicProperties, bytes], None]


class ReplyQueueDrain:
    """Drains ``queue`` into ``on_reply`` while ``pending()`` or replies remain; I/O thread only.

    ``on_done`` is called once the queue is gone (deleted here or never there), so the owner stops
    starting drains on later connections.
    """

    def __init__(self, ioloop: IOLoop, queue: str, *, on_reply: ReplyHandler, pending: Callable[[], bool],
                 on_done: Callable[[], None]) -> None:
        self.queue = queue
        self._ioloop = ioloop
        self._on_reply = on_reply
        self._pending = pending
        self._on_done = on_done
        self._connection: pika.SelectConnection | None = None
        self._channel: Channel | None = None
        self._consumer_tag: str | None = None
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
        channel.add_on_close_callback(self._on_channel_closed)
        channel.queue_declare(self.queue, passive=True, callback=self._on_found)

    def _on_found(self, frame: pika.frame.Method) -> None:
        """Step 2: the old queue is there; consume it."""
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        logger.info("Draining reply queue %s of the previous type: %d replies waiting",
                    self.queue, frame.method.message_count)
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
            return
        channel.basic_cancel(self._consumer_tag, callback=lambda _frame: self._delete(channel))

    def _delete(self, channel: Channel) -> None:
        if channel.is_open:
            channel.queue_delete(self.queue, if_unused=True, if_empty=True, callback=lambda _frame: self._deleted(channel))

    def _deleted(self, channel: Channel) -> None:
        logger.info("Drained reply queue %s of the previous type (%d replies taken) and deleted it",
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
        if code == NOT_FOUND:
            logger.debug("No reply queue %s of the other type to drain", self.queue)
            self._finish()
        elif code == PRECONDITION_FAILED and self._connection is not None and self._connection.is_open:
            logger.info("Reply queue %s not deleted: a reply arrived after the count; draining it again", self.queue)
            self.start(self._connection)


class ReplyQueues:
    """The producer's reply queue for its broker nodes, and the drain of the other type's queue.

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
        self._drain: ReplyQueueDrain | None = None
        # Only a switch leaves replies someone waits for on the other queue. After a restart the
        # old queue's replies answer requests the stopped run already failed: it expires unused.
        self._drained = True

    def switch(self, rabbitmq: RabbitMQConfig, published: Iterable[str]) -> None:
        """Use the reply queue type ``rabbitmq``'s nodes call for; the ``published`` requests
        (pending, already sent) keep their replies on the old queue, drained on the next connect."""
        self.topology = with_reply_queue_type(self._configured, rabbitmq)
        if self._direct or self.topology.reply_queue_type == self.type:
            return
        self._before_switch.update(published)
        old, self.name = self.name, reply_queue_name(self.topology, self._instance_id)
        self.type, self._drained = self.topology.reply_queue_type, False
        logger.info("Reply queue type now %s for %d broker nodes: replying on %s; draining %s of the replies "
                    "to %d requests in flight", self.type, len(rabbitmq.nodes()), self.name, old,
                    len(self._before_switch))

    def on_ready(self, connection: pika.SelectConnection) -> None:
        """A fresh connection: drain the other type's queue unless it is known to be gone."""
        if self._drained:
            return
        self.stop()
        other = dataclasses.replace(self._configured, reply_queue_type=other_reply_queue_type(self.type))
        self._drain = ReplyQueueDrain(self._ioloop, reply_queue_name(other, self._instance_id),
                                      on_reply=self._on_reply, pending=self._waiting, on_done=self._done)
        self._drain.start(connection)

    def stop(self) -> None:
        if self._drain is not None:
            self._drain.stop()

    def _waiting(self) -> bool:
        self._before_switch = {cid for cid in self._before_switch if self._is_pending(cid)}
        return bool(self._before_switch)

    def _done(self) -> None:
        self._drained = True
        self._before_switch.clear()
