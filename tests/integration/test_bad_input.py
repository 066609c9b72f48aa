"""Malformed requests go to the dead-letter queue with a logged reason; the consumer keeps serving."""

from __future__ import annotations

import logging

import pika
import pytest

from broker_helpers import queue_depth
from waiting import wait_for

VALID = {"reply_to": "somewhere", "correlation_id": "c-1", "content_type": "application/octet-stream"}

MALFORMED = {
    "no reply_to": ({**VALID, "reply_to": None}, b"x", "no reply_to"),
    "no correlation id": ({**VALID, "correlation_id": None}, b"x", "no correlation_id"),
    "body over the limit": (VALID, b"x" * 2048, "exceeds consumer.max_message_bytes"),
    "wrong content type": ({**VALID, "content_type": "application/x-pickle"}, b"x", "content type"),
    "invalid utf-8 declared as text": ({**VALID, "content_type": "text/plain; charset=utf-8"}, b"\xff\xfe", "not valid UTF-8"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_request_is_dead_lettered_and_consumer_keeps_serving(kind, make_config, start_consumer, start_producer, amqp, caplog):
    properties, body, reason = MALFORMED[kind]
    config = make_config(consumer={"max_message_bytes": 1024})
    consumer = start_consumer(config)
    producer = start_producer(config)
    caplog.set_level(logging.WARNING, logger="burrow.consumer")
    amqp.basic_publish(config.topology.request_exchange, config.topology.request_queue, body,
                       pika.BasicProperties(**properties))
    wait_for(lambda: queue_depth(amqp, config.topology.dead_letter_queue) == 1, 10, f"{kind} dead-lettered")
    assert any(reason in record.getMessage() for record in caplog.records), caplog.text
    assert consumer.stats().dead_lettered == 1
    assert producer.call(b"still-here", timeout=10) == b"Consumer processed: still-here"


def test_reply_to_a_missing_queue_dead_letters_the_request(make_config, start_consumer, amqp, caplog):
    config = make_config()
    start_consumer(config)
    caplog.set_level(logging.WARNING, logger="burrow.consumer")
    amqp.basic_publish(config.topology.request_exchange, config.topology.request_queue, b"x",
                       pika.BasicProperties(**{**VALID, "reply_to": "no-such-queue-anywhere"}))
    wait_for(lambda: queue_depth(amqp, config.topology.dead_letter_queue) == 1, 10, "request dead-lettered")
    assert "reply unroutable" in caplog.text
