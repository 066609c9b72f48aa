"""Replies in flight to a producer whose connection drops stay in its durable reply queue.

Replies reach the producer from its durable reply queue. If the producer consumed them with
``auto_ack`` the broker would forget each reply the moment it left the queue, and a connection
closed with replies still between the queue and the producer's socket would lose them for good.
This test floods a reply queue, closes the producer's connection while it drains slowly, and
counts the replies the producer saw: every one of them, at least once.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pika
import pytest

from burrow.producer import Producer
from burrow.topology import reply_queue_name

from faultcheck import Tally, begin_scenario, close_connections, finish_scenario, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

FLOOD = 12000


class SlowReplyProducer(Producer):
    """A producer whose I/O thread spends 1 ms on each reply, like a busy process: the broker's
    socket buffers fill and replies queue up between the reply queue and the producer, and the
    flood takes about 12 s to drain, longer than rabbitmqctl needs to close the connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: set[str] = set()

    def on_reply(self, channel: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        time.sleep(0.001)
        self.seen.add(properties.correlation_id)
        super().on_reply(channel, method, properties, body)


def test_reply_flood_survives_producer_connection_close(request, make_config, local_broker, amqp):
    run = begin_scenario(request, "reply-flood", f"Producer connection closed while draining {FLOOD} replies")
    tag = uuid.uuid4().hex[:6]
    config = make_config(producer={"instance_id": f"flood-{tag}"}, rabbitmq={"connection_name": f"flood-{tag}"})
    reply_queue = reply_queue_name(config.topology, f"flood-{tag}", config.rabbitmq)
    first = Producer(config).start()
    assert first.wait_ready(30)
    first.stop(timeout=0)  # the reply queue now exists with nobody consuming it
    for n in range(FLOOD):
        amqp.basic_publish("", reply_queue, b"r" * 64,
                           pika.BasicProperties(correlation_id=f"flood-{n}", delivery_mode=pika.DeliveryMode.Persistent))
    wait_for(lambda: amqp.queue_declare(reply_queue, passive=True).method.message_count == FLOOD, 30, "flood queued")
    started = time.monotonic()
    producer = SlowReplyProducer(config).start()
    try:
        wait_for(lambda: producer.stats().orphaned_replies >= 1000, 30, "the producer draining the flood")
        close_connections(local_broker, f"flood-{tag}", 1)
        seen_at_close = producer.stats().orphaned_replies
        # Counted by correlation id as they reach the producer, not by queue depth: RabbitMQ 3.10's
        # list_queues reports 0 messages (ready and unacknowledged alike) for a quorum queue whose
        # messages are all delivered and unacked, which is what the reply queue is mid-flood.
        deadline = time.monotonic() + 90
        while len(producer.seen) < FLOOD and time.monotonic() < deadline:
            time.sleep(0.5)
        seen = len(producer.seen)
        deliveries = producer.stats().orphaned_replies
    finally:
        producer.stop(timeout=0)
        amqp.queue_delete(queue=reply_queue)
    # The replies are this test's own (no handler ran): counted by correlation id as the test
    # published them, seen through the producer's on_reply, the one place a reply enters it.
    tally = Tally(scenario=run.scenario, title=run.title, sent=FLOOD, answered=min(seen, FLOOD),
                  lost=max(0, FLOOD - seen), reconnects=producer.reconnects, duration_s=round(time.monotonic() - started, 1),
                  notes={"replies_seen_at_close": seen_at_close, "distinct_replies_seen": seen,
                         "deliveries_incl_redelivered": deliveries})
    finish_scenario(request, tally)
    assert seen_at_close < FLOOD, "the flood drained before the close; the test proved nothing"
    assert producer.reconnects >= 1, "the producer never lost its connection; the test proved nothing"
