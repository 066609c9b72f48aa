"""An upgrade from a release that declared the reply queue another way loses no reply.

Earlier releases declared a producer's reply queue as ``<prefix>.<id>`` (classic, no single active
consumer, consumed exclusively: ``reply_queue_type = "classic"``, or "auto" on one node) or as
``<prefix>.<id>.quorum`` (quorum with single active consumer: the previous default). RabbitMQ refuses
to redeclare a queue with other arguments (PRECONDITION_FAILED), so today's classic queue is
``<prefix>.<id>.classic``, and the upgraded producer drains the old queue through the same drain as a
type switch. Each test plays the old release: it declares the old queue as that release did and
publishes requests naming it as ``reply_to``, which the consumer answers into it with nobody
consuming (the old process is gone); then the upgraded producer starts with the same instance id
and the default settings (classic on this one node). Counted per id: every reply waiting in the old
queue reaches the upgraded producer, which hands it to its caller if one is waiting and otherwise
logs it with its correlation id as orphaned (the callers of a stopped process are gone: it failed
them when it stopped, as after any restart); then the old queue is deleted, nothing left in it.
"""

from __future__ import annotations

import logging
import time

import pytest

from burrow.protocol import request_properties

from broker_helpers import queue_depth, queue_exists
from waiting import wait_for

#: Replies the old release left in its queue.
WAITING = 200
#: The reply queues of earlier releases: name suffix and arguments besides x-expires.
OLD_QUEUES = {
    "classic-exclusive": ("", {"x-queue-type": "classic"}),
    "quorum": (".quorum", {"x-queue-type": "quorum", "x-single-active-consumer": True}),
}


def leave_replies_in_old_queue(config, amqp, kind: str) -> tuple[str, set[str]]:
    """Declare the old release's reply queue and have the consumer answer ``WAITING`` requests into
    it; return its name and the correlation ids of the replies waiting there."""
    suffix, arguments = OLD_QUEUES[kind]
    topology = config.topology
    old = f"{topology.reply_queue_prefix}.{config.producer.instance_id}{suffix}"
    amqp.queue_declare(old, durable=True, arguments={**arguments, "x-expires": topology.reply_queue_expires * 1000})
    amqp.queue_bind(old, topology.reply_exchange, routing_key=old)
    amqp.confirm_delivery()
    ids = {f"old-{kind}-{n}" for n in range(WAITING)}
    for correlation_id in sorted(ids):
        amqp.basic_publish(topology.request_exchange, topology.request_queue, correlation_id.encode(),
                           request_properties(correlation_id, old, {}, 60_000, time.time()), mandatory=True)
    return old, ids


def orphaned(caplog: pytest.LogCaptureFixture) -> set[str]:
    return {getattr(record, "CORRELATION_ID", None) for record in caplog.records
            if record.name == "burrow.producer" and "orphaned reply" in record.getMessage()}


@pytest.mark.parametrize("kind", sorted(OLD_QUEUES))
def test_replies_waiting_in_an_earlier_releases_queue_reach_the_upgraded_producer(kind, make_config, start_consumer,
                                                                                  start_producer, amqp, caplog):
    config = make_config()
    start_consumer(config)
    old, ids = leave_replies_in_old_queue(config, amqp, kind)
    wait_for(lambda: queue_depth(amqp, old) == WAITING, 30, f"{WAITING} replies waiting in the old queue")

    caplog.set_level(logging.WARNING, logger="burrow.producer")
    producer = start_producer(config)
    assert producer.reply_queue_type == "classic" and producer.reply_queue == old.removesuffix(".quorum") + ".classic"
    wait_for(lambda: orphaned(caplog) >= ids, 30, "every waiting reply taken by the upgraded producer")
    wait_for(lambda: not queue_exists(amqp, old), 30, "the drained old queue to be deleted")
    assert orphaned(caplog) == ids
    assert producer.stats().orphaned_replies == WAITING
    assert [producer.call(f"new-{n}".encode(), timeout=10) for n in range(20)] == [
        f"Consumer processed: new-{n}".encode() for n in range(20)]
    assert producer.reconnects == 0


def test_an_old_exclusive_consumer_still_held_delays_the_drain_and_loses_nothing(make_config, start_consumer,
                                                                              start_producer, amqp, caplog):
    """The old release's connection is still held by the broker (blocked, or cut until heartbeats
    notice), with its exclusive consumer and the replies delivered to it unacked: the upgraded
    producer starts at once on its new queue; its drain is refused until that connection goes, and
    then takes every reply, those the old connection held included."""
    config = make_config()
    start_consumer(config)
    old, ids = leave_replies_in_old_queue(config, amqp, "classic-exclusive")
    held = amqp.connection.channel()
    delivered: list[str] = []
    held.basic_consume(old, lambda _ch, _method, properties, _body: delivered.append(properties.correlation_id),
                       exclusive=True)
    wait_for(lambda: amqp.connection.process_data_events(0) or len(delivered) == WAITING, 30,
             "the old release's consumer to hold every reply")

    caplog.set_level(logging.WARNING, logger="burrow.producer")
    caplog.set_level(logging.INFO, logger="burrow.amqp.replydrain")  # last: it sets the capture's level
    producer = start_producer(config)
    wait_for(lambda: any("still in use" in record.getMessage() for record in caplog.records
                         if record.name == "burrow.amqp.replydrain"), 30, "the drain to be refused")
    assert producer.call(b"meanwhile", timeout=10) == b"Consumer processed: meanwhile"
    assert orphaned(caplog) == set()
    held.close()  # the broker lets the old connection go: its unacked replies go back to the queue
    wait_for(lambda: orphaned(caplog) >= ids, 30, "every reply taken by the upgraded producer")
    wait_for(lambda: not queue_exists(amqp, old), 30, "the drained old queue to be deleted")
    assert orphaned(caplog) == ids and producer.reconnects == 0


def test_a_producer_with_nothing_to_drain_starts_without_a_warning(make_config, start_consumer, start_producer,
                                                                   caplog):
    """On a fresh start neither an earlier release's queue nor the other type's is there: each
    drain's passive declare is answered 404 and closes the drain's own channel. That is the normal
    answer, logged by burrow at DEBUG; pika's warning for a channel the broker closed must not reach
    the journal on every start (an operator would read it as a fault)."""
    config = make_config()
    start_consumer(config)
    caplog.set_level(logging.WARNING)
    caplog.set_level(logging.DEBUG, logger="burrow.amqp.replydrain")  # last: it sets the capture's level
    producer = start_producer(config)
    nothing = [f"{config.topology.reply_queue_prefix}.{config.producer.instance_id}",
               producer.reply_queue.removesuffix(".classic") + ".quorum"]
    wait_for(lambda: {name for name in nothing
                      if any(record.getMessage() == f"No reply queue {name} to drain" for record in caplog.records)}
             == set(nothing), 30, "both drains to find nothing")
    assert producer.call(b"hello", timeout=10) == b"Consumer processed: hello"
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []
