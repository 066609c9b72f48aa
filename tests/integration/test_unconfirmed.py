"""A request whose deadline passes before the broker confirmed its publish: the caller is told that
the broker never confirmed it (``RequestTimeout.confirmed`` is False), the late confirm that comes
once the broker reads the publish changes no count and leaves nothing awaiting a confirm, and the
request never runs (the consumer dead-letters it as stale). A slow handler's timeout is a confirmed
one. Issue 23: a 504 must tell a request the broker never accepted from one it accepted and lost.
"""

from __future__ import annotations

import threading

import pytest

from burrow.errors import RequestTimeout
from burrow.handlers import RequestContext
from burrow.tools.localbroker import LocalBroker

from broker_helpers import queue_depth
from waiting import wait_for


def connection_state(broker: LocalBroker, name: str) -> str | None:
    """The state the broker shows for the connection named ``name``. During a memory alarm it is
    ``blocking`` until the connection's first publish, then ``blocked``: the broker reads nothing
    more from it, so later publishes wait unread and unconfirmed."""
    listing = broker.ctl("list_connections", "--quiet", "--no-table-headers", "state", "client_properties").stdout
    for line in listing.splitlines():
        state, _, properties = line.partition("\t")
        if f'"{name}"' in properties:
            return state.strip()
    return None


def test_a_deadline_before_the_brokers_confirm_says_the_broker_never_confirmed_it(
        make_config, local_broker, start_consumer, start_producer, amqp, request):
    ran: list[bytes] = []

    def handler(body: bytes, _context: RequestContext) -> bytes:
        ran.append(body)
        return b"ok"

    config = make_config()
    start_consumer(config, handler=handler)
    name = f"test-unconfirmed:{request.node.name}"
    # The producer's own connection name, to find it on the broker; pika must not give up on the
    # blocked connection during the test (it would reconnect and republish).
    producer = start_producer(make_config(rabbitmq={"connection_name": name, "blocked_connection_timeout": 300.0}))
    local_broker.set_memory_watermark(0)
    try:
        wait_for(lambda: connection_state(local_broker, name) == "blocking", 60,
                 "the memory alarm to reach the producer's connection")
        primer = producer.submit(b"primer", timeout=120)
        wait_for(lambda: connection_state(local_broker, name) == "blocked", 60,
                 "the broker to block the producer's connection at its first publish")
        held = producer.submit(b"held", timeout=1.0)
        with pytest.raises(RequestTimeout) as caught:
            held.result(timeout=30)
    finally:
        local_broker.set_memory_watermark(0.4)
    assert caught.value.confirmed is False
    assert str(caught.value) == (f"no reply within the request's deadline (correlation id {held.correlation_id}): "
                                 "the broker never confirmed it")
    assert primer.result(timeout=60) == b"ok"
    # The broker reads the held publish now and confirms it late; the consumer drops it as stale.
    wait_for(lambda: producer.stats().awaiting_confirm == 0, 30, "the late confirm of the held request")
    wait_for(lambda: queue_depth(amqp, config.topology.dead_letter_queue) == 1, 30, "the held request dead-lettered")
    stats = producer.stats()
    assert (stats.answered, stats.timeouts, stats.unconfirmed_timeouts) == (1, 1, 1)
    assert ran == [b"primer"]


def test_a_slow_handlers_timeout_says_the_broker_confirmed_it(make_config, start_consumer, start_producer):
    started, release = threading.Event(), threading.Event()

    def handler(_body: bytes, _context: RequestContext) -> bytes:
        started.set()
        release.wait(60)
        return b"too late"

    config = make_config()
    start_consumer(config, handler=handler)
    producer = start_producer(config)
    future = producer.submit(b"slow", timeout=5.0)
    try:
        assert started.wait(30), "the handler never started"
        wait_for(lambda: producer.stats().awaiting_confirm == 0, 5, "the broker's confirm")
        with pytest.raises(RequestTimeout) as caught:
            future.result(timeout=30)
    finally:
        release.set()
    assert caught.value.confirmed is True
    assert "never confirmed" not in str(caught.value)
    stats = producer.stats()
    assert (stats.timeouts, stats.unconfirmed_timeouts) == (1, 0)
