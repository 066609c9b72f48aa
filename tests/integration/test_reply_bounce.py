"""A reply the broker returns unroutable from a burrow reply queue goes out again while its request
has time, instead of its request being dead-lettered at once. After a broker SIGKILL a consumer can
reconnect and reply before the broker routes to the recovered reply queue again (issue 23: in 1 of
50 ``broker-crash-classic`` runs 3 callers got 504 because their requests were dead-lettered as
``reply_unroutable`` a second after the restart). Here the reply queue's binding is taken away
while the handler runs and put back once the reply has bounced: the caller gets its answer and
nothing is dead-lettered.
"""

from __future__ import annotations

import logging
import threading

from burrow.handlers import RequestContext

from broker_helpers import queue_depth
from waiting import wait_for


def test_a_reply_that_bounces_off_an_unbound_reply_queue_reaches_its_caller(
        make_config, start_consumer, start_producer, amqp, caplog):
    started, release = threading.Event(), threading.Event()

    def handler(body: bytes, _context: RequestContext) -> bytes:
        started.set()
        release.wait(30)
        return b"answer:" + body

    config = make_config()
    start_consumer(config, handler=handler)
    producer = start_producer(config)
    future = producer.submit(b"x", timeout=8)
    assert started.wait(30), "the handler never ran"
    queue, exchange, dead = producer.reply_queue, config.topology.reply_exchange, config.topology.dead_letter_queue
    amqp.queue_unbind(queue, exchange, routing_key=queue)
    with caplog.at_level(logging.DEBUG, logger="burrow.amqp.replies"):
        release.set()
        wait_for(lambda: "publishing it again" in caplog.text or queue_depth(amqp, dead) > 0, 30,
                 "the reply to bounce off the unbound reply queue")
    amqp.queue_bind(queue, exchange, routing_key=queue)
    assert future.result(timeout=30) == b"answer:x"
    assert queue_depth(amqp, dead) == 0
