"""Trace context on a real broker: the producer's traceparent reaches the handler and the reply."""

from __future__ import annotations

import re
import uuid

import pika

from burrow import tracing

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_callers_trace_reaches_the_handler_context_and_its_log_context(make_config, start_consumer, start_producer):
    config = make_config(consumer={"handler": "burrow_test_handlers:trace"})
    start_consumer(config)
    producer = start_producer(config)
    assert producer.call(b"x", timeout=10, headers={"traceparent": VALID}) == f"{TRACE} {TRACE}".encode()


def test_a_request_without_trace_gets_a_new_one(make_config, start_consumer, start_producer):
    config = make_config(consumer={"handler": "burrow_test_handlers:trace"})
    start_consumer(config)
    producer = start_producer(config)
    first, second = (producer.call(b"x", timeout=10).decode().split() for _ in range(2))
    assert re.fullmatch(r"[0-9a-f]{32}", first[0]) and first[0] == first[1]
    assert second[0] != first[0]


def test_the_reply_carries_the_requests_traceparent(make_config, start_consumer, amqp):
    """A raw client publishes a traced request and reads the reply's headers itself."""
    config = make_config()
    start_consumer(config)
    reply_queue = amqp.queue_declare("", exclusive=True).method.queue
    amqp.queue_bind(reply_queue, config.topology.reply_exchange, routing_key=reply_queue)
    correlation_id = uuid.uuid4().hex
    amqp.basic_publish(
        config.topology.request_exchange,
        config.topology.request_queue,
        b"traced",
        pika.BasicProperties(correlation_id=correlation_id, reply_to=reply_queue, headers={"traceparent": VALID}),
    )
    for method, properties, body in amqp.consume(reply_queue, auto_ack=True, inactivity_timeout=10):
        assert method is not None, "no reply within 10 s"
        assert (properties.correlation_id, body) == (correlation_id, b"Consumer processed: traced")
        assert properties.headers[tracing.HEADER] == VALID
        break
    amqp.cancel()
