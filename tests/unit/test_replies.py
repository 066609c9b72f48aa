"""ReplyPublisher with a channel that records what it is asked to publish (no broker): replies go
out in order, confirmed batches reach the owner, returns mark the reply, and everything unconfirmed
is published again first on the channel that replaces a lost one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import time

import pika
import pika.exceptions
import pika.frame
import pika.spec

from burrow.amqp.iothread import IOThread
from burrow.amqp.replies import UNROUTABLE_RETRIES, ReplyPublisher
from burrow.protocol import Outcome


@dataclass(eq=False)
class Finished:
    correlation_id: str
    reply_to: str = "burrow.replies.p"
    outcome: Outcome | None = None
    returned: str | None = None
    traceparent: str | None = None
    deadline: float | None = None
    unroutable_retries: int = 0


class RecordingChannel:
    """The part of pika's Channel that ReplyPublisher uses, recording each publish."""

    def __init__(self) -> None:
        self.is_open = True
        self.published: list[tuple[str, str, bytes, bool]] = []
        self.on_return: Callable[..., None] | None = None

    def add_on_return_callback(self, callback: Callable[..., None]) -> None:
        self.on_return = callback

    def confirm_delivery(self, ack_nack_callback: Callable[[Any], None], callback: Callable[[Any], None]) -> None:
        callback(None)  # Confirm.SelectOk at once

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties,
                      mandatory: bool = False) -> None:
        if not self.is_open:
            raise pika.exceptions.ChannelWrongStateError("Channel is closed.")
        self.published.append((exchange, routing_key, body, mandatory))


class ClosingChannel(RecordingChannel):
    """Still reported open, but already refusing publishes (closing under us)."""

    def basic_publish(self, *args: Any, **kwargs: Any) -> None:
        raise pika.exceptions.ChannelWrongStateError("Channel is closing.")


def frame(method: Any) -> pika.frame.Method:
    return pika.frame.Method(1, method)


def setup(reply_queue_prefix: str | None = None) -> tuple[IOThread, ReplyPublisher[Finished], list[list[str]], list[str]]:
    io = IOThread("test-io")
    confirmed: list[list[str]] = []
    ready: list[str] = []
    publisher: ReplyPublisher[Finished] = ReplyPublisher(
        io.ioloop, "burrow.x.replies", on_ready=lambda: ready.append("ready"),
        on_confirmed=lambda batch: confirmed.append([r.correlation_id for r in batch]),
        reply_queue_prefix=reply_queue_prefix,
    )
    return io, publisher, confirmed, ready


def reply(correlation_id: str, **kwargs: Any) -> Finished:
    return Finished(correlation_id, outcome=Outcome(correlation_id.encode()), **kwargs)


def test_replies_go_out_in_order_and_a_multiple_ack_hands_the_batch_on() -> None:
    io, publisher, confirmed, ready = setup()
    channel = RecordingChannel()
    publisher.on_channel_ready(channel)  # type: ignore[arg-type]
    assert ready == ["ready"] and publisher.ready
    for name in ("a", "b", "c"):
        publisher.put(reply(name))
    publisher.publish_waiting()
    assert [(p[0], p[2], p[3]) for p in channel.published] == [("burrow.x.replies", b"a", True), ("burrow.x.replies", b"b", True),
                                                               ("burrow.x.replies", b"c", True)]
    publisher.on_confirm(frame(pika.spec.Basic.Ack(delivery_tag=2, multiple=True)))
    publisher.on_confirm(frame(pika.spec.Basic.Ack(delivery_tag=2, multiple=True)))  # repeated: nothing new
    assert confirmed == [["a", "b"]]
    io.ioloop.close()


def test_direct_reply_to_goes_to_the_default_exchange_without_mandatory() -> None:
    io, publisher, _confirmed, _ready = setup()
    channel = RecordingChannel()
    publisher.on_channel_ready(channel)  # type: ignore[arg-type]
    publisher.put(reply("d", reply_to="amq.rabbitmq.reply-to.g1h2"))
    publisher.publish_waiting()
    assert channel.published == [("", "amq.rabbitmq.reply-to.g1h2", b"d", False)]
    io.ioloop.close()


def test_a_returned_reply_is_marked_before_its_confirm() -> None:
    io, publisher, confirmed, _ready = setup()
    channel = RecordingChannel()
    publisher.on_channel_ready(channel)  # type: ignore[arg-type]
    gone = reply("g", reply_to="burrow.replies.gone")
    publisher.put(gone)
    publisher.publish_waiting()
    assert channel.on_return is not None
    channel.on_return(channel, pika.spec.Basic.Return(312, "NO_ROUTE", "burrow.x.replies", "burrow.replies.gone"),
                      pika.BasicProperties(correlation_id="g"), b"g")
    publisher.on_confirm(frame(pika.spec.Basic.Ack(delivery_tag=1)))
    assert confirmed == [["g"]]
    assert gone.returned == "reply unroutable: no queue 'burrow.replies.gone' (NO_ROUTE)"
    io.ioloop.close()


def returned(channel: RecordingChannel, correlation_id: str, queue: str) -> None:
    assert channel.on_return is not None
    channel.on_return(channel, pika.spec.Basic.Return(312, "NO_ROUTE", "burrow.x.replies", queue),
                      pika.BasicProperties(correlation_id=correlation_id), b"")


def run_loop_until(io: IOThread, done: Callable[[], bool], limit: float = 5.0) -> None:
    """Run the I/O loop on this thread until ``done()`` (looked at every 10 ms) or ``limit`` s."""
    give_up = time.monotonic() + limit

    def look() -> None:
        if done() or time.monotonic() > give_up:
            io.ioloop.stop()
        else:
            io.ioloop.call_later(0.01, look)

    io.ioloop.call_later(0.01, look)
    io.ioloop.start()


def publish_and_bounce(*replies: Finished) -> tuple[IOThread, ReplyPublisher[Finished], list[list[str]], RecordingChannel]:
    """A publisher that knows burrow's reply queues, ``replies`` published and each returned."""
    io, publisher, confirmed, _ready = setup(reply_queue_prefix="burrow.replies")
    channel = RecordingChannel()
    publisher.on_channel_ready(channel)  # type: ignore[arg-type]
    for one in replies:
        publisher.put(one)
    publisher.publish_waiting()
    for one in replies:
        returned(channel, one.correlation_id, one.reply_to)
    return io, publisher, confirmed, channel


def test_a_reply_returned_from_a_burrow_reply_queue_goes_out_again_while_it_has_time() -> None:
    back = reply("b", reply_to="burrow.replies.p", deadline=time.time() + 30)
    io, publisher, confirmed, channel = publish_and_bounce(back)
    publisher.on_confirm(frame(pika.spec.Basic.Ack(delivery_tag=1)))
    # Not handed on (its request is neither acked nor dead-lettered yet), published again shortly.
    assert confirmed == [] and back.returned is None
    run_loop_until(io, lambda: len(channel.published) == 2)
    assert [p[1] for p in channel.published] == ["burrow.replies.p", "burrow.replies.p"]
    publisher.on_confirm(frame(pika.spec.Basic.Ack(delivery_tag=2)))
    assert confirmed == [["b"]] and back.returned is None and back.unroutable_retries == 1
    io.ioloop.close()


def test_a_returned_reply_without_time_retries_or_a_burrow_queue_is_handed_on_at_once() -> None:
    late = reply("late", reply_to="burrow.replies.p", deadline=time.time() + 0.1)
    spent = reply("spent", reply_to="burrow.replies.p", unroutable_retries=UNROUTABLE_RETRIES)
    foreign = reply("foreign", reply_to="callers.own.queue")
    io, publisher, confirmed, _channel = publish_and_bounce(late, spent, foreign)
    publisher.on_confirm(frame(pika.spec.Basic.Ack(delivery_tag=3, multiple=True)))
    assert confirmed == [["late", "spent", "foreign"]]
    assert all(one.returned for one in (late, spent, foreign))
    io.ioloop.close()


def test_unconfirmed_replies_are_published_again_first_after_a_channel_loss() -> None:
    io, publisher, confirmed, ready = setup()
    lost = RecordingChannel()
    publisher.on_channel_ready(lost)  # type: ignore[arg-type]
    for name in ("a", "b", "c"):
        publisher.put(reply(name))
    publisher.publish_waiting()
    publisher.on_confirm(frame(pika.spec.Basic.Ack(delivery_tag=1)))
    lost.is_open = False
    publisher.on_channel_lost("connection lost")
    assert not publisher.ready
    publisher.put(reply("d"))
    publisher.publish_waiting()  # no channel: d waits
    fresh = RecordingChannel()
    publisher.on_channel_ready(fresh)  # type: ignore[arg-type]
    assert [p[2] for p in fresh.published] == [b"b", b"c", b"d"]
    assert ready == ["ready", "ready"]
    # The new channel numbers from 1 again: tag 2 is now c, not the old channel's b.
    publisher.on_confirm(frame(pika.spec.Basic.Ack(delivery_tag=2, multiple=True)))
    assert confirmed == [["a"], ["b", "c"]]
    io.ioloop.close()


def test_a_publish_that_fails_keeps_the_reply_for_the_next_channel() -> None:
    io, publisher, _confirmed, _ready = setup()
    closing = ClosingChannel()
    publisher.on_channel_ready(closing)  # type: ignore[arg-type]
    publisher.put(reply("a"))
    publisher.publish_waiting()
    fresh = RecordingChannel()
    publisher.on_channel_ready(fresh)  # type: ignore[arg-type]
    assert [p[2] for p in fresh.published] == [b"a"]
    io.ioloop.close()


DEAD = "amq.rabbitmq.reply-to.dead.k1"
LIVE = "amq.rabbitmq.reply-to.live.k2"


def test_an_internal_error_drops_only_the_replies_to_the_one_address_unconfirmed() -> None:
    """The failover-direct-producer-node failure: replies to the dead producer's address keep
    coming from handler threads after the first INTERNAL_ERROR, next to replies to the producer's
    new (live) address; only the dead address's replies may be dropped."""
    io, publisher, confirmed, _ready = setup()
    first = RecordingChannel()
    publisher.on_channel_ready(first)  # type: ignore[arg-type]
    publisher.put(reply("d1", reply_to=DEAD))
    publisher.publish_waiting()
    first.is_open = False
    publisher.on_channel_lost("(541, 'INTERNAL_ERROR')")
    publisher.put(reply("d2", reply_to=DEAD))
    publisher.put(reply("l1", reply_to=LIVE))
    fresh = RecordingChannel()
    publisher.on_channel_ready(fresh)  # type: ignore[arg-type]
    assert [p[1:3] for p in fresh.published] == [(LIVE, b"l1")]
    assert sum(confirmed, []) == ["d1", "d2"]  # settled unsent
    io.ioloop.close()


def test_with_several_addresses_unconfirmed_nothing_is_dropped_until_one_is_named() -> None:
    io, publisher, confirmed, _ready = setup()
    first = RecordingChannel()
    publisher.on_channel_ready(first)  # type: ignore[arg-type]
    for name, address in (("l1", LIVE), ("d1", DEAD), ("l2", LIVE)):
        publisher.put(reply(name, reply_to=address))
    publisher.publish_waiting()
    first.is_open = False
    publisher.on_channel_lost("(541, 'INTERNAL_ERROR')")
    assert confirmed == []  # the culprit is unknown: every reply goes out again
    second = RecordingChannel()
    publisher.on_channel_ready(second)  # type: ignore[arg-type]
    assert [p[2] for p in second.published] == [b"l1", b"l2"]  # one address in flight at a time
    publisher.on_confirm(frame(pika.spec.Basic.Ack(delivery_tag=2, multiple=True)))
    assert [p[2] for p in second.published] == [b"l1", b"l2", b"d1"]
    second.is_open = False
    publisher.on_channel_lost("(541, 'INTERNAL_ERROR')")  # with only d1 in flight: DEAD is named
    publisher.put(reply("l3", reply_to=LIVE))
    publisher.put(reply("d2", reply_to=DEAD))
    third = RecordingChannel()
    publisher.on_channel_ready(third)  # type: ignore[arg-type]
    assert [p[2] for p in third.published] == [b"l3"]
    assert sum(confirmed, []) == ["l1", "l2", "d1", "d2"]
    io.ioloop.close()
