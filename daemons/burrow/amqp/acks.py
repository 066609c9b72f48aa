"""Ack batching: as few ``basic.ack`` frames as the order of the deliveries allows.

The consumer's handlers finish out of order. :class:`AckBatcher` keeps the delivery tags of one
consuming channel that are still unsettled (handed to a worker, not yet acked or rejected), oldest
first. Every tag below the oldest unsettled one is settled, so a batch of finished requests is
acked with one ``multiple=True`` ack up to the highest of them below that tag, and only those
above it one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pika.adapters.select_connection import IOLoop
from pika.channel import Channel


@dataclass(frozen=True, slots=True)
class AckPlan:
    """The acks for one batch: ``multiple`` (one ack with multiple=True, or None) then ``single``."""

    multiple: int | None = None
    single: list[int] = field(default_factory=list)


class AckBatcher:
    """Unsettled delivery tags of the current consuming channel, in delivery order."""

    def __init__(self) -> None:
        self._unsettled: dict[int, None] = {}

    def __len__(self) -> int:
        return len(self._unsettled)

    def received(self, delivery_tag: int) -> None:
        """A delivery went to a worker: it must be acked or rejected on this channel."""
        self._unsettled[delivery_tag] = None

    def rejected(self, delivery_tag: int) -> None:
        """A delivery was rejected on its own (dead-lettered): no longer to be acked."""
        self._unsettled.pop(delivery_tag, None)

    def reset(self) -> None:
        """A new consuming channel: the old channel's tags are void (the broker redelivers them)."""
        self._unsettled.clear()

    def settle(self, delivery_tags: list[int]) -> AckPlan:
        """Mark ``delivery_tags`` settled and say which acks cover them."""
        for tag in delivery_tags:
            self._unsettled.pop(tag, None)
        if not delivery_tags:
            return AckPlan()
        oldest = next(iter(self._unsettled), None)
        if oldest is None:
            return AckPlan(multiple=max(delivery_tags))
        below = [tag for tag in delivery_tags if tag < oldest]
        return AckPlan(multiple=max(below) if below else None, single=[tag for tag in delivery_tags if tag > oldest])

    def ack(self, channel: Channel, delivery_tags: list[int]) -> None:
        """Settle ``delivery_tags`` and send the acks that cover them on ``channel``."""
        plan = self.settle(delivery_tags)
        if plan.multiple is not None:
            channel.basic_ack(plan.multiple, multiple=True)
        for tag in plan.single:
            channel.basic_ack(tag)


class ReplyAcks:
    """The producer's reply acks: every reply of one socket read acked with one ``multiple`` ack.

    :meth:`received` only remembers the newest delivery tag and, once per loop turn, schedules
    :meth:`flush` with a timer of 0 s, which pika runs right after the current read is processed.
    The ack goes to the channel the reply came on, and only while that channel is open (a closed
    channel's unacked replies are redelivered to the next one and dropped there as duplicates).
    """

    def __init__(self, ioloop: IOLoop) -> None:
        self._ioloop = ioloop
        self._latest: tuple[Channel, int] | None = None
        self._scheduled = False

    def received(self, channel: Channel, delivery_tag: int) -> None:
        self._latest = (channel, delivery_tag)
        if not self._scheduled:
            self._scheduled = True
            self._ioloop.call_later(0, self.flush)

    def flush(self) -> None:
        """Ack every reply received up to the latest one (on its channel, if still open)."""
        self._scheduled = False
        if self._latest is None:
            return
        (channel, delivery_tag), self._latest = self._latest, None
        if channel.is_open:
            channel.basic_ack(delivery_tag, multiple=True)
