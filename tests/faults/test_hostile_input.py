"""Bad messages published straight to the request queue while a steady load runs.

Each bad message gets a dead-letter with a logged reason, or (when it is odd but valid) a reply;
the consumer daemon stays up and the load beside it loses nothing. The malformed kinds that
tests/integration/test_bad_input.py checks one by one are sent here all together, under load,
together with the rest of the issue's list.
"""

from __future__ import annotations

import uuid

import pika
import pika.exceptions
import pytest

from burrow.protocol import decode_reply

from faultcheck import (
    HandlerLog,
    begin_scenario,
    expected_reply,
    finish_scenario,
    republished,  # noqa: F401 - a fixture
    wait_for,
)
from loads import Load

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

MAX_BYTES = 4096

#: name -> (properties, body, reason the consumer logs when dead-lettering it)
DEAD_LETTERED = {
    "no reply_to": ({"reply_to": None}, b"x", "no reply_to"),
    "no correlation id": ({"correlation_id": None}, b"x", "no correlation_id"),
    "body over the limit": ({}, b"x" * (MAX_BYTES + 1), "exceeds consumer.max_message_bytes"),
    "wrong content type": ({"content_type": "application/x-pickle"}, b"x", "not in consumer.content_types"),
    "invalid UTF-8 declared as text": ({"content_type": "text/plain; charset=utf-8"}, b"\xff\xfe", "not valid UTF-8"),
    "reply_to naming no queue": ({"reply_to": "no-such-queue-anywhere"}, b"x", "reply unroutable"),
}
#: Dead-lettered requests that say where to answer: their caller gets a rejection notice with this reason.
NOTIFIED = {"body over the limit": "too_large", "wrong content type": "content_type",
            "invalid UTF-8 declared as text": "invalid_utf8"}

#: name -> (properties, body): odd but valid requests that must be answered like any other
ANSWERED = {
    "empty body": ({}, b""),
    "unknown headers": ({"headers": {"x-unknown": "?", "x-nested": {"a": [1, 2, {"b": None}]}}}, b"odd-headers"),
    "huge header table": ({"headers": {f"x-h{n:05d}": "v" * 40 for n in range(1200)}}, b"huge-headers"),
    "duplicate message id (1)": ({"message_id": "same-id"}, b"dup-1"),
    "duplicate message id (2)": ({"message_id": "same-id"}, b"dup-2"),
}


def test_bad_requests_under_load(request, make_config, consumer_process, start_producer, republished, amqp, tmp_path, monkeypatch):
    run = begin_scenario(request, "hostile-input", "Bad requests published to the request queue mid-load")
    log = HandlerLog(tmp_path / "handled.txt")
    monkeypatch.setenv("BURROW_TEST_RECORD", str(log.path))
    config = make_config(consumer={"handler": "burrow_test_handlers:record", "max_message_bytes": MAX_BYTES})
    topology = config.topology
    daemon = consumer_process(config).start()
    daemon.wait_ready()
    raw_replies = f"{topology.reply_queue_prefix}.raw-{uuid.uuid4().hex[:6]}"
    amqp.queue_declare(raw_replies, durable=True, arguments={"x-expires": 600_000})
    amqp.queue_bind(raw_replies, topology.reply_exchange, routing_key=raw_replies)
    producer = start_producer(config)
    load = Load(producer, 1000, prefix="beside-bad", rate=300).start()
    load.wait_answered(100, 30)

    def publish(properties: dict, body: bytes, correlation_id: str) -> None:
        values = {"reply_to": raw_replies, "correlation_id": correlation_id,
                  "content_type": "application/octet-stream", **properties}
        amqp.basic_publish(topology.request_exchange, topology.request_queue, body, pika.BasicProperties(**values))

    for name, (properties, body, _reason) in DEAD_LETTERED.items():
        publish(properties, body, f"bad:{name}")
    for name, (properties, body) in ANSWERED.items():
        publish(properties, body, f"odd:{name}")

    # A forged user_id: the broker itself refuses it and closes only the forger's channel.
    forger = amqp.connection.channel()
    forger.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        forger.basic_publish(topology.request_exchange, topology.request_queue, b"forged",
                             pika.BasicProperties(user_id="admin", reply_to=raw_replies, correlation_id="forged"))
    assert refused.value.reply_code == 406 and "user_id" in refused.value.reply_text

    dead = lambda: amqp.queue_declare(topology.dead_letter_queue, passive=True).method.message_count  # noqa: E731
    wait_for(lambda: dead() >= len(DEAD_LETTERED), 30, "every bad request dead-lettered")
    replies: dict[str, bytes] = {}
    rejections: dict[str, str] = {}

    def collect() -> bool:
        method, properties, body = amqp.basic_get(raw_replies, auto_ack=True)
        if method is not None:
            ok, value = decode_reply(properties, body)
            if ok:
                replies[properties.correlation_id] = value
            else:
                rejections[properties.correlation_id] = value.reason
        return len(replies) >= len(ANSWERED) and len(rejections) >= len(NOTIFIED)

    wait_for(collect, 30, "a reply to every odd request and a notice for every rejected one")
    load.finish(60)
    tally = load.tally(run, log, republished)
    daemon_log = daemon.log()
    missing_reasons = [name for name, (_p, _b, reason) in DEAD_LETTERED.items() if reason not in daemon_log]
    tally.notes.update(dead_lettered=dead(), odd_requests_answered=len(replies), forged_user_id=refused.value.reply_text)
    finish_scenario(request, tally)
    assert dead() == len(DEAD_LETTERED), "only the bad requests may be dead-lettered"
    assert missing_reasons == [], f"no logged reason for {missing_reasons}:\n{daemon_log[-3000:]}"
    assert replies == {f"odd:{name}": expected_reply(body) for name, (_p, body) in ANSWERED.items()}
    assert rejections == {f"bad:{name}": reason for name, reason in NOTIFIED.items()}
    assert daemon.process.poll() is None, "the consumer daemon died"
    assert "forged" not in {run.body.decode(errors="replace") for run in log.runs()}
    amqp.queue_delete(raw_replies)
