"""Hostile clients of the producer's HTTP API, with a real Producer and consumer behind it.

Bad methods and paths, missing, malformed and huge ``Content-Length``, bodies that never arrive
and bad ``X-Burrow-Timeout`` headers each get a clear status code within the read timeout, and a
well-behaved client keeps being served while they try. Slow-loris clients and the size limits are
tried on the producer daemon itself, in tests/integration/test_http_inputs.py.
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Iterator

import pytest

from burrow.daemon.http import HttpApi
from rawhttp import connect, exchange, post

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

READ_TIMEOUT = 1.0
MAX_BODY = 4096


@pytest.fixture
def api(make_config, start_consumer, start_producer, tmp_path: Path) -> Iterator[HttpApi]:
    config = make_config()
    start_consumer(config)
    producer = start_producer(config)
    server = HttpApi(producer, socket_path=str(tmp_path / "producer.sock"), max_body=MAX_BODY,
                     default_timeout=10.0, read_timeout=READ_TIMEOUT, socket_activation=False)
    server.start()
    try:
        yield server
    finally:
        server.close()


BAD_REQUESTS = {
    "PUT on /v1/requests": (b"PUT /v1/requests HTTP/1.1\r\nHost: b\r\nContent-Length: 1\r\n\r\nx", 405, "method_not_allowed"),
    "DELETE on /v1/health": (b"DELETE /v1/health HTTP/1.1\r\nHost: b\r\n\r\n", 405, "method_not_allowed"),
    "unknown path": (b"GET /v2/../etc/passwd HTTP/1.1\r\nHost: b\r\n\r\n", 404, "not_found"),
    "POST without Content-Length": (b"POST /v1/requests HTTP/1.1\r\nHost: b\r\n\r\n", 411, "length_required"),
    "chunked body": (b"POST /v1/requests HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", 411, "length_required"),
    "Content-Length not a number": (b"POST /v1/requests HTTP/1.1\r\nHost: b\r\nContent-Length: ten\r\n\r\n", 400, "bad_request"),
    "negative Content-Length": (b"POST /v1/requests HTTP/1.1\r\nHost: b\r\nContent-Length: -5\r\n\r\n", 400, "bad_request"),
    "huge Content-Length": (b"POST /v1/requests HTTP/1.1\r\nHost: b\r\nContent-Length: 999999999999\r\n\r\n", 413, "too_large"),
    "body over max_message_bytes": (post(b"x" * (MAX_BODY + 1)), 413, "too_large"),
    "non-numeric X-Burrow-Timeout": (post(b"x", b"X-Burrow-Timeout: soon\r\n"), 400, "bad_timeout"),
    "negative X-Burrow-Timeout": (post(b"x", b"X-Burrow-Timeout: -1\r\n"), 400, "bad_timeout"),
    "NaN X-Burrow-Timeout": (post(b"x", b"X-Burrow-Timeout: nan\r\n"), 400, "bad_timeout"),
    "infinite X-Burrow-Timeout": (post(b"x", b"X-Burrow-Timeout: 1e999\r\n"), 400, "bad_timeout"),
    "unknown method": (b"BREW /v1/requests HTTP/1.1\r\nHost: b\r\n\r\n", 501, "not_implemented"),
    "two-word garbage request line": (b"HELLO THERE\r\n\r\n", 400, "bad_request"),
    "request line without a version": (b"POST /v1/requests\r\n\r\n", 400, "bad_request"),
    "header line over 64 KiB": (b"GET /v1/health HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431, "request_header_fields_too_large"),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_request_gets_a_clear_error(api, name):
    raw, status, code = BAD_REQUESTS[name]
    got, headers, body = exchange(api.address, raw)
    assert got == status, body
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == code
    # The daemon is unaffected: the next client gets its reply.
    assert exchange(api.address, post(b"after"))[::2] == (200, b"Consumer processed: after")


def test_body_that_never_arrives_is_cut_off_with_408(api):
    with connect(api.address) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/requests HTTP/1.1\r\nHost: b\r\nContent-Length: 100\r\n\r\nonly-part")
        response = http.client.HTTPResponse(sock)
        response.begin()
        elapsed = time.monotonic() - started
        assert response.status == 408
        assert READ_TIMEOUT * 0.8 <= elapsed < READ_TIMEOUT + 2
