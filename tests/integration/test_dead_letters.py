"""Dead letters reach their callers at once: the consumer's rejection notices and the watcher's notice
for requests past the delivery limit, each a typed failure well before the request's deadline,
with the request still kept in the dead-letter queue and nothing answered twice."""

from __future__ import annotations

import time

import pika
import pytest

from burrow.deadletters import DeadLetterWatcher
from burrow.errors import DeliveryLimitExceeded, Rejected
from burrow.protocol import HEADER_DEADLINE, decode_reply

from broker_helpers import next_message, queue_depth, reply_queue, start_victims_until_dead_lettered
from waiting import wait_for

#: Every request here gets this long; the point is that the caller learns far sooner.
TIMEOUT = 30.0


def test_too_large_request_fails_its_caller_at_once_and_stays_dead_lettered(make_config, start_consumer, start_producer, amqp):
    config = make_config(consumer={"max_message_bytes": 1024})
    start_consumer(config)
    producer = start_producer(config)
    started = time.monotonic()
    future = producer.submit(b"x" * 2048, timeout=TIMEOUT)
    with pytest.raises(Rejected) as failure:
        future.result(timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    assert failure.value.reason == "too_large"
    assert "exceeds consumer.max_message_bytes (1024)" in failure.value.message
    print(f"too_large: caller told after {elapsed * 1000:.0f} ms (timeout {TIMEOUT:.0f} s)")
    assert elapsed < TIMEOUT / 3, f"caller learned after {elapsed:.1f}s, not at once"
    wait_for(lambda: queue_depth(amqp, config.topology.dead_letter_queue) == 1, 10, "the request kept for audit")
    assert producer.call(b"still-here", timeout=10) == b"Consumer processed: still-here"
    stats = producer.stats()
    assert (stats.rejected, stats.duplicate_replies, stats.orphaned_replies) == (1, 0, 0)


WIRE_KINDS = {
    "content_type": ({"content_type": "application/x-pickle"}, b"x", {}),
    "invalid_utf8": ({"content_type": "text/plain; charset=utf-8"}, b"\xff\xfe", {}),
    "too_large": ({}, b"x" * 2048, {}),
    "stale": ({}, b"x", {HEADER_DEADLINE: int((time.time() - 60) * 1000)}),
}


@pytest.mark.parametrize("reason", sorted(WIRE_KINDS))
def test_rejection_notice_on_the_wire_names_the_reason(reason, make_config, start_consumer, start_producer, amqp):
    """Requests a Producer cannot build: published by hand, answered on a queue this test reads."""
    overrides, body, headers = WIRE_KINDS[reason]
    config = make_config(consumer={"max_message_bytes": 1024})
    start_consumer(config)
    replies = reply_queue(amqp, config, "wire")
    properties = {"reply_to": replies, "correlation_id": f"wire-{reason}",
                  "content_type": "application/octet-stream", "headers": headers, **overrides}
    amqp.basic_publish(config.topology.request_exchange, config.topology.request_queue, body,
                       pika.BasicProperties(**properties))
    props, reply = next_message(amqp, replies, 10, f"the {reason} notice")
    ok, error = decode_reply(props, reply)
    assert not ok and type(error) is Rejected, error
    assert (props.correlation_id, error.reason) == (f"wire-{reason}", reason)
    wait_for(lambda: queue_depth(amqp, config.topology.dead_letter_queue) == 1, 10, "the request kept for audit")
    assert queue_depth(amqp, replies) == 0, "answered twice"
    assert start_producer(config).call(b"still-here", timeout=10) == b"Consumer processed: still-here"


def test_poison_request_fails_its_caller_with_delivery_limit_exceeded(make_config, consumer_process, start_producer, amqp, tmp_path, monkeypatch):
    """Consumers that the poison kills never answer; the watcher tells the caller once the broker
    dead-letters it, and acks the notice copy only after that, leaving the dead letter in place."""
    monkeypatch.setenv("BURROW_TEST_RECORD", str(tmp_path / "record.txt"))
    config = make_config(consumer={"handler": "burrow_test_handlers:poison", "concurrency": 2,
                                   "dead_letter_notices": False},
                         topology={"delivery_limit": 2})
    watcher = DeadLetterWatcher(config).start()
    try:
        assert watcher.wait_ready(30)
        producer = start_producer(config)
        poison = producer.submit(b"poison", timeout=TIMEOUT)
        dead_letters = lambda: queue_depth(amqp, config.topology.dead_letter_queue)  # noqa: E731
        start_victims_until_dead_lettered(config, consumer_process, dead_letters)
        dead_lettered_at = time.monotonic()
        assert dead_letters() == 1
        with pytest.raises(DeliveryLimitExceeded) as failure:
            poison.result(timeout=TIMEOUT)
        told_after = time.monotonic() - dead_lettered_at
        print(f"delivery_limit: caller told {told_after * 1000:.0f} ms after the test saw the dead letter (timeout {TIMEOUT:.0f} s)")
        assert told_after < 5, f"caller told {told_after:.1f}s after the dead-lettering"
        error = failure.value
        assert (error.reason, error.delivery_count, error.first_death_reason) == ("delivery_limit", 3, "delivery_limit")
        assert error.first_death_queue == config.topology.request_queue
        wait_for(lambda: queue_depth(amqp, config.topology.dead_letter_notice_queue) == 0, 10, "the notice copy acked")
        assert dead_letters() == 1, "the dead letter itself must stay for operators"
        stats = producer.stats()
        assert (stats.rejected, stats.duplicate_replies, stats.orphaned_replies) == (1, 0, 0)
        assert watcher.notices == 1
    finally:
        watcher.stop()


def test_watcher_ignores_what_the_consumer_already_answered(make_config, start_consumer, start_producer, amqp):
    """A request the consumer rejected is copied to the notice queue too; the watcher acks that copy
    without a second notice."""
    config = make_config(consumer={"max_message_bytes": 1024})
    watcher = DeadLetterWatcher(config).start()
    try:
        assert watcher.wait_ready(30)
        start_consumer(config)
        producer = start_producer(config)
        with pytest.raises(Rejected):
            producer.call(b"x" * 2048, timeout=TIMEOUT)
        wait_for(lambda: queue_depth(amqp, config.topology.dead_letter_notice_queue) == 0, 10, "the copy acked")
        assert producer.call(b"after", timeout=10) == b"Consumer processed: after"
        assert watcher.notices == 0
        assert producer.stats().duplicate_replies == 0
    finally:
        watcher.stop()
