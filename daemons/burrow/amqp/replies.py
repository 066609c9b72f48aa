"""``ReplyPublisher``: the consumer's publishing channel, replies out with publisher confirms.

Handler threads :meth:`~ReplyPublisher.put` finished requests (anything with a ``correlation_id``,
``reply_to`` and the handler's :class:`~burrow.protocol.Outcome`); the I/O thread publishes them in
order, persistent to the reply exchange or transient to a direct reply-to address. The broker's
confirms decide what happens next: acked replies go to the owner's ``on_confirmed`` (which acks
their requests), nacked ones are published again after :data:`REPLY_RETRY_DELAY`, and a reply
the broker returned as unroutable is marked ``returned`` before its confirm arrives. One returned
from a burrow reply queue (under ``reply_queue_prefix``) goes out again every
:data:`UNROUTABLE_RETRY_DELAY`, up to :data:`UNROUTABLE_RETRIES` times and not past its request's
deadline, before the owner dead-letters its request: after a broker restart a consumer can
reconnect before the reply queue's binding is back, or before the producer has declared its queue
again. ``on_acked``/``on_nacked`` tell the connection's keeper about confirms
(a fresh channel whose first confirms are nacks is reopened, see ``burrow.amqp.setup``). When the channel is lost, every unconfirmed reply goes out again first
on the next one, except direct replies to an address an INTERNAL_ERROR proved dead. Lifecycle steps: ``on_channel_ready`` -> ``on_confirms_enabled`` -> the owner's
``on_ready``; ``on_channel_lost`` forgets the channel.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Callable, Generic, Protocol, TypeVar

import pika
import pika.frame
import pika.spec
from pika.adapters.select_connection import IOLoop
from pika.channel import Channel

from burrow.amqp.confirms import ConfirmTracker
from burrow.amqp.inbox import Inbox
from burrow.protocol import Outcome, is_burrow_reply_queue, reply_properties
from burrow.topology import DIRECT_REPLY_TO

logger = logging.getLogger(__name__)

REPLY_RETRY_DELAY = 1.0
#: A reply returned unroutable from a burrow reply queue is published again after this many
#: seconds, at most :data:`UNROUTABLE_RETRIES` times (5 s in all, module docstring). Seen once in
#: 50 broker SIGKILLs: the broker routed nothing to a reply queue it had recovered, for a moment.
UNROUTABLE_RETRY_DELAY = 0.5
UNROUTABLE_RETRIES = 10
#: How many dead direct reply-to addresses are remembered, so late replies to them are not sent.
DEAD_ADDRESSES_KEPT = 1024


class PendingReply(Protocol):
    """What the publisher needs of one finished request."""

    @property
    def correlation_id(self) -> str: ...

    @property
    def traceparent(self) -> str | None: ...

    @property
    def deadline(self) -> float | None: ...

    reply_to: str
    outcome: Outcome | None
    returned: str | None
    unroutable_retries: int


R = TypeVar("R", bound=PendingReply)


class ReplyPublisher(Generic[R]):
    """Publishes replies on the channel it is given and reports the confirmed ones."""

    def __init__(
        self,
        ioloop: IOLoop,
        reply_exchange: str,
        *,
        on_ready: Callable[[], None],
        on_confirmed: Callable[[list[R]], None],
        on_acked: Callable[[], None] = lambda: None,
        on_nacked: Callable[[], bool] = lambda: False,
        reply_queue_prefix: str | None = None,
    ) -> None:
        self._ioloop = ioloop
        self._reply_exchange = reply_exchange
        self._reply_queue_prefix = reply_queue_prefix
        self._on_ready = on_ready
        self._on_confirmed = on_confirmed
        self._on_acked = on_acked
        self._on_nacked = on_nacked
        self._channel: Channel | None = None
        self._confirms: ConfirmTracker[R] = ConfirmTracker()
        self._waiting: Inbox[R] = Inbox(ioloop, self.publish_waiting)
        # Direct reply-to addresses proven dead (oldest first), and the one-address-at-a-time
        # mode entered when an INTERNAL_ERROR could not be pinned on one address.
        self._dead: OrderedDict[str, None] = OrderedDict()
        self._careful = False
        self._probe: str | None = None

    @property
    def ready(self) -> bool:
        return self._channel is not None

    @property
    def unconfirmed(self) -> int:
        """Replies published and not yet confirmed."""
        return len(self._confirms)

    def put(self, reply: R) -> None:
        """Any thread: publish ``reply`` on the I/O thread's next turn (or after reconnecting)."""
        self._waiting.put(reply)

    # The rest runs on the I/O thread.

    def publish(self, reply: R) -> None:
        """Publish ``reply`` now, after those already waiting (or once a channel is ready)."""
        self._waiting.put(reply)
        self.publish_waiting()

    def on_channel_ready(self, channel: Channel) -> None:
        channel.add_on_return_callback(self.on_returned)
        channel.confirm_delivery(ack_nack_callback=self.on_confirm, callback=lambda _f: self.on_confirms_enabled(channel))

    def on_confirms_enabled(self, channel: Channel) -> None:
        """Replies not confirmed on the lost channel go out again first, then the owner goes on."""
        self._channel = channel
        self._waiting.put_back(self._confirms.reset())
        self.publish_waiting()
        self._on_ready()

    def on_channel_lost(self, reason: str) -> None:
        self._channel = None
        if "INTERNAL_ERROR" in reason:
            self._blame_direct_reply(self._confirms.reset())

    def _blame_direct_reply(self, pending: list[R]) -> None:
        """RabbitMQ 3.10 closes a channel with INTERNAL_ERROR when it publishes to a direct
        reply-to address whose connection lived on a node that is now down, and discards whatever
        the channel published after it. Every unconfirmed reply goes out again first on the next
        channel, except those to an address proven dead: the only direct reply-to address with
        replies unconfirmed when the channel died. Those are dropped and handed on as settled
        (their requests are acked), because sending them again would close every new channel the
        same way and their producer republishes its pending requests on its new connection. When
        several addresses were unconfirmed the culprit is unknown, so none is dropped: direct
        replies then go out one address at a time (see :meth:`publish_waiting`) until the next
        INTERNAL_ERROR names the address in flight or every reply is through. A reply to a live
        producer is never dropped for sharing a channel with one to a dead node."""
        suspects = {reply.reply_to for reply in pending if reply.reply_to.startswith(DIRECT_REPLY_TO)}
        culprit = self._probe if self._careful else (next(iter(suspects)) if len(suspects) == 1 else None)
        self._probe = None
        self._waiting.put_back(pending)
        if culprit is None:
            self._careful = self._careful or bool(suspects)
            return
        self._dead[culprit] = None
        while len(self._dead) > DEAD_ADDRESSES_KEPT:
            self._dead.popitem(last=False)

    def _drop(self, dead: list[R]) -> None:
        """Settle, unsent, replies to direct reply-to addresses proven dead."""
        logger.warning("Dropping %d direct reply-to replies the broker could not deliver (their producer's "
                       "connection is gone); those producers republish the requests", len(dead))
        self._on_confirmed(dead)

    def publish_waiting(self) -> None:
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        held: list[R] = []
        dead: list[R] = []
        while self._waiting:
            reply = self._waiting.pop()
            outcome = reply.outcome
            if outcome is None:
                raise ValueError(f"reply {reply.correlation_id} has no outcome to publish")
            direct = reply.reply_to.startswith(DIRECT_REPLY_TO)
            if direct and reply.reply_to in self._dead:
                dead.append(reply)
                continue
            if direct and self._careful:
                # One direct reply-to address in flight at a time, so an INTERNAL_ERROR names it.
                if self._probe is None:
                    self._probe = reply.reply_to
                elif reply.reply_to != self._probe:
                    held.append(reply)
                    continue
            properties = reply_properties(reply.correlation_id, outcome, persistent=not direct,
                                          traceparent=reply.traceparent)
            try:
                # Not mandatory for direct reply-to: RabbitMQ 3.10 returns every such reply as
                # NO_ROUTE although it delivers it (the benchmark saw all of them returned, and all
                # answered), so mandatory would dead-letter every answered request.
                channel.basic_publish("" if direct else self._reply_exchange, reply.reply_to, outcome.body,
                                      properties, mandatory=not direct)
            except Exception as exc:
                logger.warning("Reply publish failed (%s); retrying after reconnect", exc)
                self._waiting.put_back([reply, *held])
                break
            self._confirms.published(reply)
        else:
            self._waiting.put_back(held)
        if dead:
            self._drop(dead)

    def _probe_confirmed(self) -> None:
        """The address in flight is through: publish the next one, or leave one-at-a-time mode."""
        if self._probe is None or any(reply.reply_to == self._probe for reply in self._confirms.pending()):
            return
        self._probe = None
        if not any(reply.reply_to.startswith(DIRECT_REPLY_TO) for reply in self._waiting):
            self._careful = False
        self.publish_waiting()

    def on_returned(self, _channel: Channel, method: pika.spec.Basic.Return, properties: pika.BasicProperties, _body: bytes) -> None:
        """The reply had nowhere to go (reply queue deleted or never existed): mark it for the DLQ."""
        for reply in self._confirms.pending():
            if reply.correlation_id == properties.correlation_id:
                reply.returned = f"reply unroutable: no queue {method.routing_key!r} ({method.reply_text})"

    def on_confirm(self, frame: pika.frame.Method) -> None:
        """Broker ack/nack of replies: hand the acked batch on at once, retry the nacked ones."""
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack) and self._on_nacked():
            return  # reconnecting: they stay unconfirmed and go out again first on the next channel
        replies = self._confirms.confirmed(method.delivery_tag, method.multiple)
        if not isinstance(method, pika.spec.Basic.Nack):
            self._on_acked()
            replies = self._publish_returned_again(replies)
            if replies:
                self._on_confirmed(replies)
            self._probe_confirmed()
            return
        for reply in replies:
            logger.warning("Broker refused a reply (nack); retrying in %.0fs", REPLY_RETRY_DELAY,
                           extra={"CORRELATION_ID": reply.correlation_id})
            self._ioloop.call_later(REPLY_RETRY_DELAY, lambda r=reply: self._retry(r))

    def _publish_returned_again(self, replies: list[R]) -> list[R]:
        """Those of ``replies`` that are settled now; each one returned from a burrow reply queue
        with retries and time left goes out again after :data:`UNROUTABLE_RETRY_DELAY` instead."""
        prefix = self._reply_queue_prefix
        if prefix is None or not any(reply.returned for reply in replies):
            return replies
        settled: list[R] = []
        latest = time.time() + UNROUTABLE_RETRY_DELAY
        for reply in replies:
            deadline = reply.deadline
            if (reply.returned is None or not is_burrow_reply_queue(reply.reply_to, prefix)
                    or reply.unroutable_retries >= UNROUTABLE_RETRIES or (deadline is not None and deadline <= latest)):
                settled.append(reply)
                continue
            logger.debug("%s; publishing it again in %.1fs", reply.returned, UNROUTABLE_RETRY_DELAY,
                         extra={"CORRELATION_ID": reply.correlation_id})
            reply.returned = None
            reply.unroutable_retries += 1
            self._ioloop.call_later(UNROUTABLE_RETRY_DELAY, lambda r=reply: self._retry(r))
        return settled

    def _retry(self, reply: R) -> None:
        self._waiting.put_back([reply])
        self.publish_waiting()
