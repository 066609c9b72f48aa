"""Nothing is lost: consumer kills, broker restarts, producer restarts, drains, poison messages."""

from __future__ import annotations

import time

import pytest

from burrow.errors import DeliveryLimitExceeded
from burrow.producer import Producer
from burrow.topology import reply_queue_name

from broker_helpers import queue_depth, start_victims_until_dead_lettered
from waiting import wait_for


def test_consumer_sigkill_mid_load_then_restart_answers_every_request(make_config, consumer_process, start_producer, tmp_path, monkeypatch):
    record = tmp_path / "record.txt"
    monkeypatch.setenv("BURROW_TEST_RECORD", str(record))
    config = make_config(consumer={"handler": "burrow_test_handlers:record", "concurrency": 4})
    producer = start_producer(config)
    first = consumer_process(config, "first").start()
    first.wait_ready()
    futures = {i: producer.submit(f"k{i}".encode(), timeout=120) for i in range(2000)}
    wait_for(lambda: sum(f.done() for f in futures.values()) >= 200, 60, "200 answers before the kill")
    first.kill()
    answered_before_restart = sum(f.done() for f in futures.values())
    assert answered_before_restart < 2000, "load finished before the kill; the test proves nothing"
    second = consumer_process(config, "second").start()
    second.wait_ready()
    replies = {i: f.result(timeout=120) for i, f in futures.items()}
    assert all(reply == f"Consumer processed: k{i}".encode() for i, reply in replies.items())
    assert producer.stats().answered == 2000
    # Requests the killed consumer held unacked came back flagged as redeliveries.
    flags = [line.split(" ")[1] for line in record.read_text().splitlines()]
    assert "1" in flags, "no redelivery seen after SIGKILL"


def test_broker_restart_with_requests_queued_loses_nothing(make_config, local_broker, start_consumer, start_producer, amqp):
    config = make_config(producer={"request_timeout": 120.0})
    producer = start_producer(config)
    futures = {i: producer.submit(f"q{i}".encode()) for i in range(300)}
    wait_for(lambda: queue_depth(amqp, config.topology.request_queue) == 300, 30, "300 requests queued")
    amqp.connection.close()
    local_broker.stop()
    local_broker.start()
    wait_for(lambda: producer.connected, 60, "producer reconnected")
    start_consumer(config)
    for i, future in futures.items():
        assert future.result(timeout=60) == f"Consumer processed: q{i}".encode()
    assert producer.reconnects >= 1


def test_producer_restart_replies_still_reach_its_reply_queue(make_config, start_consumer, amqp):
    config = make_config(producer={"instance_id": "restart-me"})
    first = Producer(config).start()
    assert first.wait_ready(30)
    for i in range(50):
        first.submit(f"r{i}".encode(), timeout=60)
    wait_for(lambda: queue_depth(amqp, config.topology.request_queue) == 50, 30, "requests confirmed and queued")
    first.stop(timeout=0)  # the producer goes away with 50 requests in flight
    start_consumer(config)
    reply_queue = reply_queue_name(config.topology, "restart-me", config.rabbitmq)
    wait_for(lambda: queue_depth(amqp, reply_queue) == 50, 30, "50 replies waiting in the durable reply queue")
    second = Producer(config).start()
    try:
        assert second.wait_ready(30)
        wait_for(lambda: second.stats().orphaned_replies == 50, 30, "the new instance counts the 50 orphaned replies")
        assert second.call(b"after-restart", timeout=10) == b"Consumer processed: after-restart"
    finally:
        second.stop(timeout=0)
        amqp.queue_delete(queue=reply_queue)


def test_sigterm_drains_in_flight_requests_and_exits_zero(make_config, consumer_process, start_producer):
    config = make_config(consumer={"handler": "burrow_test_handlers:slow", "concurrency": 4, "prefetch": 4})
    proc = consumer_process(config).start()
    proc.wait_ready()
    producer = start_producer(config)
    futures = [producer.submit(f"1.5:{i}".encode()) for i in range(4)]
    time.sleep(0.5)  # let the four requests reach the handlers (they each take 1.5 s)
    assert proc.stop(timeout=30) == 0
    assert [f.result(timeout=5) for f in futures] == [f"Consumer processed: 1.5:{i}".encode() for i in range(4)]
    assert "draining" in proc.log()


def test_poison_message_reaches_dead_letter_queue_alone_after_delivery_limit(make_config, consumer_process, start_producer, amqp, tmp_path, monkeypatch):
    record = tmp_path / "record.txt"
    monkeypatch.setenv("BURROW_TEST_RECORD", str(record))
    # The default window (8 x 4 workers): the poison arrives beside slow innocent requests, which
    # are still unacked when it kills the consumer, so every crash in a full window would raise
    # their delivery count too. Redeliveries are taken one at a time, so only the poison's grows.
    config = make_config(consumer={"handler": "burrow_test_handlers:poison", "concurrency": 4},
                         topology={"delivery_limit": 2})
    producer = start_producer(config)
    bodies = [f"slow:ok{i}".encode() for i in range(20)]
    others = [producer.submit(body, timeout=120) for body in bodies[:3]]
    poison = producer.submit(b"poison", timeout=120)
    others += [producer.submit(body, timeout=120) for body in bodies[3:]]
    dead_letters = lambda: queue_depth(amqp, config.topology.dead_letter_queue)  # noqa: E731
    start_victims_until_dead_lettered(config, consumer_process, dead_letters)
    assert dead_letters() == 1
    # The first delivery and delivery_limit (2) redeliveries each killed a consumer.
    assert record.read_text().count("poison-hit") == 3
    survivor = consumer_process(config, "survivor").start()
    survivor.wait_ready()
    assert [f.result(timeout=60) for f in others] == [b"Consumer processed: " + body for body in bodies]
    assert survivor.process.poll() is None
    # The survivor's dead-letter watcher tells the poison's caller why no answer will come.
    with pytest.raises(DeliveryLimitExceeded) as failure:
        poison.result(timeout=60)
    assert failure.value.delivery_count == 3
    _method, _properties, body = amqp.basic_get(config.topology.dead_letter_queue, auto_ack=True)
    assert body == b"poison"
    assert dead_letters() == 0
