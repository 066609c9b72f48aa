"""Rejection notices on the wire: what the consumer and the dead-letter watcher send, what the caller raises."""

from __future__ import annotations

import datetime

import pika

from burrow.deadletters import death_summary
from burrow.errors import DeliveryLimitExceeded, Rejected, RemoteError
from burrow.protocol import (
    HEADER_DELIVERY_COUNT,
    HEADER_DIED_AT,
    HEADER_FIRST_DEATH_QUEUE,
    HEADER_FIRST_DEATH_REASON,
    REJECT_DELIVERY_LIMIT,
    REJECT_TOO_LARGE,
    decode_reply,
    rejection_headers,
)


def test_rejection_notice_decodes_to_rejected_with_reason_and_message() -> None:
    ok, error = decode_reply(pika.BasicProperties(headers=rejection_headers(REJECT_TOO_LARGE)), b"body of 9 bytes exceeds 4")
    assert not ok
    assert type(error) is Rejected
    assert (error.reason, error.message) == ("too_large", "body of 9 bytes exceeds 4")
    assert not isinstance(error, RemoteError), "a rejected request was never handled: not a remote error"


def test_delivery_limit_notice_carries_count_and_the_brokers_death_record() -> None:
    headers = {**rejection_headers(REJECT_DELIVERY_LIMIT), HEADER_DELIVERY_COUNT: 6,
               HEADER_FIRST_DEATH_REASON: "delivery_limit", HEADER_FIRST_DEATH_QUEUE: "burrow.requests",
               HEADER_DIED_AT: 1_700_000_000_500}
    ok, error = decode_reply(pika.BasicProperties(headers=headers), b"crashed every consumer")
    assert not ok
    assert isinstance(error, DeliveryLimitExceeded) and isinstance(error, Rejected)
    assert (error.reason, error.delivery_count, error.first_death_reason, error.first_death_queue, error.died_at) == (
        "delivery_limit", 6, "delivery_limit", "burrow.requests", 1_700_000_000.5)


def test_plain_reply_is_not_a_rejection() -> None:
    assert decode_reply(pika.BasicProperties(headers={}), b"fine") == (True, b"fine")


def test_death_summary_reads_the_brokers_headers() -> None:
    died = datetime.datetime(2026, 11, 29, 5, 21, 21, tzinfo=datetime.timezone.utc)
    headers = {"x-first-death-reason": b"delivery_limit", "x-first-death-queue": "burrow.requests",
               "x-death": [{"count": 1, "reason": "delivery_limit", "queue": "burrow.requests", "time": died}]}
    assert death_summary(headers) == ("delivery_limit", "burrow.requests", died.timestamp())
    assert death_summary({}) == ("", "", None)
