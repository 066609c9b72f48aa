"""The wire contract: request headers and properties, request validation, replies both ways."""

from __future__ import annotations

import time

import pika
import pytest

from burrow.errors import Rejected, RemoteError
from burrow.protocol import (
    CONTENT_TYPE,
    HEADER_DEADLINE,
    HEADER_ERROR_TYPE,
    HEADER_STATUS,
    HEADER_TRACEBACK,
    REJECT_CONTENT_TYPE,
    REJECT_INVALID_UTF8,
    REJECT_MALFORMED,
    REJECT_STALE,
    REJECT_TOO_LARGE,
    Outcome,
    Rejection,
    decode_reply,
    reply_properties,
    request_deadline,
    request_headers,
    request_properties,
    validate_request,
)

CONTENT_TYPES = ("application/octet-stream", "text/plain")


def request(**overrides: object) -> pika.BasicProperties:
    values: dict[str, object] = {"reply_to": "replies", "correlation_id": "c1", "content_type": CONTENT_TYPE,
                                 "headers": request_headers(None, time.time() + 60)}
    values.update(overrides)
    return pika.BasicProperties(**values)


def check(properties: pika.BasicProperties, body: bytes = b"x", now: float | None = None) -> Rejection | None:
    return validate_request(properties, body, max_message_bytes=16, content_types=CONTENT_TYPES,
                            now=time.time() if now is None else now)


def test_request_headers_keep_the_callers_and_add_the_deadline_in_ms() -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = request_headers({"tenant": "a", "traceparent": traceparent}, 1700000000.25)
    assert headers == {"tenant": "a", "traceparent": traceparent, HEADER_DEADLINE: 1700000000250}
    assert request_headers(None, 1700000000.25)["traceparent"] != traceparent  # a new trace
    assert request_deadline(pika.BasicProperties(headers=headers)) == 1700000000.25


def test_request_properties_are_persistent_with_ids_expiration_and_reply_to() -> None:
    properties = request_properties("p-1", "burrow.replies.x", {HEADER_DEADLINE: 5}, 1500, 1700000000.9)
    assert properties.delivery_mode == pika.DeliveryMode.Persistent.value
    assert (properties.correlation_id, properties.message_id, properties.reply_to) == ("p-1", "p-1", "burrow.replies.x")
    assert (properties.expiration, properties.timestamp, properties.content_type) == ("1500", 1700000000, CONTENT_TYPE)
    assert properties.headers == {HEADER_DEADLINE: 5}


@pytest.mark.parametrize("value", [None, "123", 1.5, True])
def test_an_unreadable_deadline_is_none(value: object) -> None:
    assert request_deadline(pika.BasicProperties(headers={HEADER_DEADLINE: value})) is None


def test_a_well_formed_fresh_request_passes() -> None:
    assert check(request()) is None
    assert check(request(content_type=None)) is None
    assert check(request(content_type="text/plain; charset=utf-8"), "é".encode()) is None


@pytest.mark.parametrize(
    "overrides, body, code, reason",
    [
        ({"reply_to": None}, b"x", REJECT_MALFORMED, "no reply_to"),
        ({"correlation_id": None}, b"x", REJECT_MALFORMED, "no correlation_id"),
        ({}, b"x" * 17, REJECT_TOO_LARGE, "body of 17 bytes exceeds consumer.max_message_bytes (16)"),
        ({"content_type": "application/json"}, b"x", REJECT_CONTENT_TYPE,
         "content type 'application/json' not in consumer.content_types"),
        ({"content_type": "text/plain"}, b"\xff", REJECT_INVALID_UTF8,
         "declared text/plain but the body is not valid UTF-8 (invalid start byte at byte 0)"),
    ],
)
def test_malformed_requests_are_rejected_with_code_and_reason(overrides: dict[str, object], body: bytes, code: str,
                                                              reason: str) -> None:
    rejection = check(request(**overrides), body)
    assert rejection == Rejection(code, reason) and not rejection.stale


def test_a_request_past_its_deadline_is_stale() -> None:
    properties = request(headers=request_headers(None, 1000.0))
    rejection = check(properties, now=1000.5)
    assert rejection == Rejection(REJECT_STALE, "expired before processing (deadline passed)") and rejection.stale
    assert check(properties, now=999.0) is None


def test_malformed_wins_over_stale() -> None:
    properties = request(reply_to=None, headers=request_headers(None, 1000.0))
    assert check(properties, now=2000.0) == Rejection(REJECT_MALFORMED, "no reply_to")


def test_an_ok_outcome_round_trips_to_the_body() -> None:
    properties = reply_properties("c1", Outcome(b"done"), persistent=True)
    assert properties.delivery_mode == pika.DeliveryMode.Persistent.value
    assert properties.correlation_id == "c1" and properties.content_type == CONTENT_TYPE
    assert decode_reply(properties, b"done") == (True, b"done")


def test_a_failure_round_trips_to_a_remote_error_with_its_traceback_only_when_asked() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        with_tb = Outcome.failure(exc, include_traceback=True)
        without = Outcome.failure(exc, include_traceback=False)
    assert not with_tb.ok and with_tb.error_type == "KeyError" and with_tb.body == b"'missing'"
    properties = reply_properties("c1", with_tb, persistent=False)
    assert properties.delivery_mode == pika.DeliveryMode.Transient.value
    assert properties.headers[HEADER_STATUS] == "error" and "KeyError" in properties.headers[HEADER_TRACEBACK]
    ok, error = decode_reply(properties, with_tb.body)
    assert not ok and isinstance(error, RemoteError)
    assert (error.type_name, error.remote_traceback is not None) == ("KeyError", True)
    headers = reply_properties("c1", without, persistent=True).headers
    assert HEADER_TRACEBACK not in headers and headers[HEADER_ERROR_TYPE] == "KeyError"


def test_a_rejection_outcome_is_a_rejection_notice_the_producer_raises() -> None:
    outcome = Outcome.rejection(Rejection(REJECT_TOO_LARGE, "body of 17 bytes exceeds 16"))
    assert not outcome.ok and outcome.error_type is None
    properties = reply_properties("c1", outcome, persistent=True)
    ok, error = decode_reply(properties, outcome.body)
    assert not ok and isinstance(error, Rejected) and not isinstance(error, RemoteError)
    assert (error.reason, error.message) == (REJECT_TOO_LARGE, "body of 17 bytes exceeds 16")


def test_a_reply_without_status_or_with_bytes_headers_decodes() -> None:
    assert decode_reply(pika.BasicProperties(), b"r") == (True, b"r")
    ok, error = decode_reply(pika.BasicProperties(headers={HEADER_STATUS: b"error", HEADER_ERROR_TYPE: b"E"}), b"m")
    assert not ok and isinstance(error, RemoteError) and error.type_name == "E"
