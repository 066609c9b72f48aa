"""The producer's HTTP API over a real Unix socket, with a small fake producer behind it.

The fake (the one allowed in unit tests) resolves each request from its body, so every status code
the API can answer is reachable: anything else is echoed as ``reply:<body>``; ``timeout``,
``remote``, ``publish`` and ``unavailable`` fail that way (``timeout:unconfirmed``: a timeout the
broker never confirmed); ``slow:<seconds>`` answers late.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import itertools
import json
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httptools
import pytest
import uvloop

from burrow import metrics
from burrow.daemon import prometheus
from burrow.errors import (
    BrokerUnavailable,
    DeliveryLimitExceeded,
    PublishError,
    Rejected,
    RemoteError,
    RequestTimeout,
    UnknownService,
)
from burrow.daemon.http import HttpApi
from burrow.daemon.sockets import bind_socket, inherited_socket
from burrow.tools import sendclient, socketburst
from burrow.tools.sendclient import SendError, SocketClient, UnixHTTPConnection


class FakeProducer:
    """Implements burrow.daemon.http.ProducerAPI; the request body says what happens."""

    def __init__(self) -> None:
        self.connected = True
        self.reply_queue_type = "classic"
        self.calls: list[tuple[bytes, float | None, dict[str, Any]]] = []
        self.services: list[str | None] = []
        self.keys: list[str | None] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def submit(
        self, body: bytes, *, timeout: float | None = None, headers: dict[str, Any] | None = None, block: bool = True,
        service: str | None = None, key: str | None = None,
    ) -> concurrent.futures.Future[bytes]:
        self.calls.append((body, timeout, dict(headers or {})))
        self.services.append(service)
        self.keys.append(key)
        if body == b"unavailable":
            raise BrokerUnavailable("producer is closed")
        future: concurrent.futures.Future[bytes] = concurrent.futures.Future()
        future.correlation_id = f"corr-{next(self._ids)}"  # type: ignore[attr-defined]
        if body.startswith(b"slow:"):
            with self._lock:
                self._in_flight += 1

            def finish() -> None:
                with self._lock:
                    self._in_flight -= 1
                future.set_result(b"done")

            threading.Timer(float(body[5:]), finish).start()
        elif body.startswith(b"timeout"):
            future.set_exception(RequestTimeout("no reply within 0.1 s", confirmed=body != b"timeout:unconfirmed"))
        elif body == b"remote":
            future.set_exception(RemoteError("ValueError", "bad input"))
        elif service == "nosuch":
            future.set_exception(UnknownService(service, "unknown service 'nosuch': no queue serves it"))
        elif body == b"publish":
            future.set_exception(PublishError("queue full (reject-publish)"))
        elif body.startswith(b"rejected:"):
            future.set_exception(Rejected(body[9:].decode(), "the consumer refused it"))
        elif body == b"poison":
            future.set_exception(DeliveryLimitExceeded("crashed every consumer", delivery_count=6,
                                                       first_death_reason="delivery_limit",
                                                       first_death_queue="burrow.requests", died_at=None))
        else:
            future.set_result(b"reply:" + body)
        return future


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


@pytest.fixture
def api(producer: FakeProducer, tmp_path: Path) -> Iterator[HttpApi]:
    server = HttpApi(
        producer,
        socket_path=str(tmp_path / "producer.sock"),
        max_body=1024,
        default_timeout=5.0,
        read_timeout=0.5,
        max_connections=4,
        socket_activation=False,
        # A broker that is down is answered at once here; waiting for it has a test of its own.
        unavailable_wait=0.0,
    )
    server.start()
    yield server
    server.close()


def call(
    api: HttpApi, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = UnixHTTPConnection(api.address, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def raw(api: HttpApi, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are and read until the server closes the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(api.address)
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_post_returns_the_reply_with_ids(api: HttpApi, producer: FakeProducer) -> None:
    status, headers, body = call(api, "POST", "/v1/requests", b"hello")
    assert (status, body) == (200, b"reply:hello")
    assert headers["content-type"] == "application/octet-stream"
    assert headers["x-burrow-correlation-id"] == "corr-1"
    request_id = headers["x-burrow-request-id"]
    assert len(request_id) == 32
    traceparent = headers["traceparent"]
    assert producer.calls == [(b"hello", 5.0, {"x-burrow-request-id": request_id, "traceparent": traceparent})]


def test_traceparent_continues_the_clients_trace_with_a_new_parent(api: HttpApi, producer: FakeProducer) -> None:
    theirs = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    _, headers, _ = call(api, "POST", "/v1/requests", b"traced", {"traceparent": theirs})
    sent = producer.calls[-1][2]["traceparent"]
    assert sent == headers["traceparent"]
    assert sent.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-") and sent.endswith("-01") and sent != theirs
    _, headers, _ = call(api, "POST", "/v1/requests", b"untraced", {"traceparent": "garbage"})
    assert "4bf92f3577b34da6a3ce929d0e0e4736" not in headers["traceparent"]
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", headers["traceparent"])


def test_client_request_id_is_kept_and_bad_ones_replaced(api: HttpApi) -> None:
    _, headers, _ = call(api, "POST", "/v1/requests", b"a", {"X-Burrow-Request-Id": "order-17"})
    assert headers["x-burrow-request-id"] == "order-17"
    _, headers, _ = call(api, "POST", "/v1/requests", b"a", {"X-Burrow-Request-Id": "bad id\u00e9".encode().decode("latin-1")})
    assert headers["x-burrow-request-id"] != "bad id"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"timeout", 504, "timeout"),
        (b"remote", 502, "remote_error"),
        (b"publish", 503, "refused"),
        (b"unavailable", 503, "unavailable"),
    ],
)
def test_failures_map_to_status_codes(api: HttpApi, body: bytes, status: int, error: str) -> None:
    got, headers, data = call(api, "POST", "/v1/requests", body)
    document = json.loads(data)
    assert (got, document["error"]) == (status, error)
    assert headers["content-type"] == "application/json"
    assert document["request_id"] == headers["x-burrow-request-id"]
    if body != b"unavailable":
        assert headers["x-burrow-correlation-id"] == document["correlation_id"]
    if status == 503:
        assert headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"rejected:too_large", 413),
        (b"rejected:content_type", 415),
        (b"rejected:invalid_utf8", 422),
        (b"rejected:stale", 504),
        (b"rejected:some_future_reason", 422),
        (b"poison", 502),
    ],
)
def test_dead_lettered_request_answers_its_reason_at_once(api: HttpApi, body: bytes, status: int) -> None:
    got, headers, data = call(api, "POST", "/v1/requests", body)
    document = json.loads(data)
    reason = body[9:].decode() if body != b"poison" else "delivery_limit"
    assert (got, document["error"], document["reason"]) == (status, "rejected", reason)
    assert headers["x-burrow-reject-reason"] == reason
    if body == b"poison":
        assert document["delivery_count"] == 6


@pytest.mark.parametrize(("body", "confirmed"), [(b"timeout", True), (b"timeout:unconfirmed", False)])
def test_a_504_says_whether_the_broker_confirmed_the_request(
    api: HttpApi, body: bytes, confirmed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        status, headers, data = call(api, "POST", "/v1/requests", body)
    document = json.loads(data)
    assert (status, document["error"], document["confirmed"]) == (504, "timeout", confirmed)
    assert ("the broker never confirmed it" in document["message"]) is not confirmed
    # One INFO line per 504, naming the request and saying what the caller was told.
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and "timed out" in r.getMessage()]
    assert headers["x-burrow-request-id"] in line and ("the broker never confirmed it" in line) is not confirmed


def test_remote_error_carries_type_and_message(api: HttpApi) -> None:
    _, headers, data = call(api, "POST", "/v1/requests", b"remote")
    document = json.loads(data)
    assert (document["type"], document["message"]) == ("ValueError", "bad input")
    assert headers["x-burrow-error-type"] == "ValueError"


def test_broker_down_answers_503_without_submitting(api: HttpApi, producer: FakeProducer) -> None:
    producer.connected = False
    status, _, data = call(api, "POST", "/v1/requests", b"x")
    assert (status, json.loads(data)["error"]) == (503, "unavailable")
    assert producer.calls == []


def test_request_waits_for_the_broker_connection_to_come_back(producer: FakeProducer, tmp_path: Path) -> None:
    """A failover (a drained broker) is a moment without a connection: the request waits it out."""
    server = HttpApi(producer, socket_path=str(tmp_path / "producer.sock"), unavailable_wait=30.0,
                     socket_activation=False)
    server.start()
    producer.connected = False
    reconnect = threading.Timer(0.2, setattr, (producer, "connected", True))
    reconnect.start()
    try:
        status, _, data = call(server, "POST", "/v1/requests", b"during failover")
    finally:
        reconnect.cancel()
        server.close()
    assert (status, data) == (200, b"reply:during failover")
    assert [body for body, _, _ in producer.calls] == [b"during failover"]


def test_future_never_resolving_gives_504(api: HttpApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """Belt and braces: even if the producer never fails the future, the client gets 504."""
    monkeypatch.setattr("burrow.daemon.http.app.RESULT_GRACE", 0.0)
    status, _, data = call(api, "POST", "/v1/requests", b"slow:3", {"X-Burrow-Timeout": "0.2"})
    document = json.loads(data)
    # The producer never said whether the broker confirmed it: not known, never a guess.
    assert (status, document["error"], document["confirmed"]) == (504, "timeout", None)


def test_too_large_is_413(api: HttpApi, producer: FakeProducer) -> None:
    status, headers, data = call(api, "POST", "/v1/requests", b"x" * 1025)
    assert (status, json.loads(data)["error"]) == (413, "too_large")
    assert headers["connection"] == "close"
    assert call(api, "POST", "/v1/requests", b"x" * 1024)[0] == 200
    assert len(producer.calls) == 1


def test_expect_100_continue_is_refused_before_the_body(api: HttpApi) -> None:
    response = raw(
        api,
        b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    )
    assert response.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in response


def test_expect_100_continue_within_limit(api: HttpApi) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(api.address)
        sock.sendall(b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"hi")
        response = b""
        while not response.endswith(b"reply:hi"):
            chunk = sock.recv(65536)
            assert chunk, response
            response += chunk
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"reply:hi")


def test_missing_content_length_is_411(api: HttpApi) -> None:
    response = raw(api, b"POST /v1/requests HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 411 ")
    response = raw(api, b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 411 ")


def test_bad_content_length_is_400(api: HttpApi) -> None:
    assert raw(api, b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n").startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "1e9", ""])
def test_bad_timeout_header_is_400(api: HttpApi, producer: FakeProducer, value: str) -> None:
    status, _, data = call(api, "POST", "/v1/requests", b"x", {"X-Burrow-Timeout": value})
    assert (status, json.loads(data)["error"]) == (400, "bad_timeout")
    assert producer.calls == []


def test_timeout_header_reaches_the_producer(api: HttpApi, producer: FakeProducer) -> None:
    assert call(api, "POST", "/v1/requests", b"x", {"X-Burrow-Timeout": "2.5"})[0] == 200
    assert producer.calls[0][1] == 2.5


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/v1/requests", 405, "POST"),
        ("PUT", "/v1/requests", 405, "POST"),
        ("DELETE", "/v1/health", 405, "GET"),
        ("POST", "/v1/health", 405, "GET"),
        ("GET", "/", 404, None),
        ("POST", "/v2/requests", 404, None),
    ],
)
def test_bad_paths_and_methods(api: HttpApi, method: str, path: str, status: int, allow: str | None) -> None:
    got, headers, data = call(api, method, path, b"{}" if method in ("POST", "PUT") else None)
    assert got == status
    assert json.loads(data)["error"] == ("method_not_allowed" if status == 405 else "not_found")
    assert headers.get("allow") == allow


def test_health(api: HttpApi, producer: FakeProducer) -> None:
    status, headers, data = call(api, "GET", "/v1/health")
    document = json.loads(data)
    assert status == 200 and headers["content-type"] == "application/json"
    assert document["broker_connected"] is True and document["in_flight"] == 0 and document["draining"] is False
    producer.connected = False
    status, _, data = call(api, "GET", "/v1/health")
    assert status == 503 and json.loads(data)["broker_connected"] is False


def test_metrics_endpoint(api: HttpApi) -> None:
    assert call(api, "GET", "/metrics")[0] == 404
    prometheus.enable("producer")
    try:
        metrics.request_sent()
        call(api, "GET", "/nowhere")
        status, headers, data = call(api, "GET", "/metrics")
    finally:
        prometheus.disable()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert b"burrow_producer_requests_published_total 1.0" in data
    assert b'burrow_producer_http_responses_total{code="404"} 1.0' in data


def test_keep_alive_serves_several_requests_on_one_connection(api: HttpApi) -> None:
    connection = UnixHTTPConnection(api.address, timeout=5)
    try:
        for n in range(3):
            connection.request("POST", "/v1/requests", body=b"k%d" % n)
            response = connection.getresponse()
            assert response.read() == b"reply:k%d" % n
    finally:
        connection.close()


def test_slow_loris_is_cut_off_while_others_are_served(api: HttpApi) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
        slow.settimeout(5)
        slow.connect(api.address)
        started = time.monotonic()
        closed_after = None
        for byte in b"POST /v1/requests HTTP/1.1\r\nHost: x\r\n":
            try:
                slow.sendall(bytes([byte]))
                assert call(api, "POST", "/v1/requests", b"meanwhile")[0] == 200
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - started
                break
            time.sleep(0.05)  # the slow client's pace: this is the behaviour under test
        if closed_after is None:
            assert slow.recv(1) == b""
            closed_after = time.monotonic() - started
    assert closed_after < 0.5 + 1.0, "a trickling request must not outlive read_timeout (0.5 s)"


def test_slow_body_gets_408(api: HttpApi) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(api.address)
        sock.sendall(b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 408 ")


def test_connection_limit_answers_503(api: HttpApi) -> None:
    api.reconfigure(read_timeout=10.0)  # longer than the accept loop's wait for a free slot
    idle = []
    try:
        for _ in range(4):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(api.address)
            idle.append(sock)
        deadline = time.monotonic() + 5
        while api.connection_count < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        status, _headers, data = call(api, "GET", "/v1/health")
        assert status == 503 and json.loads(data)["error"] == "busy"
    finally:
        for sock in idle:
            sock.close()
    # Slots come back when those clients leave (or when read_timeout cuts them off).
    deadline = time.monotonic() + 5
    while api.connection_count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert call(api, "GET", "/v1/health")[0] == 200


def test_socket_file_mode_and_cleanup(api: HttpApi, tmp_path: Path) -> None:
    info = os.stat(api.address)
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o660
    api.close()
    assert not os.path.exists(tmp_path / "producer.sock")


def test_stale_socket_is_replaced_but_a_live_one_is_not(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    live = bind_socket(path, 0o600)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with pytest.raises(OSError, match="another process"):
            bind_socket(path, 0o600)
    finally:
        live.close()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="not a socket"):
        bind_socket(str(tmp_path / "file"), 0o600)


def test_drain_waits_for_running_requests(api: HttpApi) -> None:
    results: list[tuple[int, dict[str, str], bytes]] = []
    worker = threading.Thread(target=lambda: results.append(call(api, "POST", "/v1/requests", b"slow:0.5")))
    worker.start()
    deadline = time.monotonic() + 5
    while not api.producer.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    api.stop_accepting()
    assert api.drain(5.0) is True
    worker.join(5)
    status, headers, body = results[0]
    assert (status, body) == (200, b"done")
    assert headers["connection"] == "close"
    # Our own socket is gone: new clients fail at once rather than wait for nobody.
    with pytest.raises((ConnectionRefusedError, FileNotFoundError)):
        call(api, "GET", "/v1/health")


def test_send_client_and_error(api: HttpApi) -> None:
    client = SocketClient(api.address, timeout=3)
    assert client.send(b"abc") == b"reply:abc"
    assert client.health()["broker_connected"] is True
    with pytest.raises(SendError) as failure:
        client.send(b"remote")
    assert failure.value.status == 502 and "ValueError: bad input" in str(failure.value)


def test_inherited_socket_needs_our_pid() -> None:
    assert inherited_socket({"LISTEN_PID": "1", "LISTEN_FDS": "1"}) is None
    assert inherited_socket({}) is None


CHILD = (
    "import concurrent.futures, itertools, threading\n"
    "from typing import Any\n"
    "from burrow.errors import BrokerUnavailable, PublishError, RemoteError, RequestTimeout\n"
    + inspect.getsource(FakeProducer)
    + textwrap.dedent(
        """
        import logging, signal, sys
        from burrow.daemon.http import HttpApi
        logging.basicConfig(level=logging.INFO)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        api = HttpApi(FakeProducer(), socket_path=sys.argv[1], default_timeout=5.0)
        api.start()
        print("activated" if api.activated else "own socket", flush=True)
        signal.sigwait({signal.SIGTERM})
        api.stop_accepting()
        api.drain(5.0)
        api.close()
        """
    )
)

# Like systemd: the listening socket becomes fd 3 and LISTEN_PID is the pid that execs Python
# (bash, because dash redirects single-digit descriptors only).
ACTIVATE = 'eval "exec 3<&$FD $FD<&-"; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"'


def _spawn_activated(listener: socket.socket, path: str) -> subprocess.Popen[str]:
    """Start a producer the way systemd does: the listening socket as fd 3, LISTEN_PID = its pid."""
    fd = listener.fileno()
    return subprocess.Popen(
        ["/bin/bash", "-c", ACTIVATE, sys.executable, "-c", CHILD, path],
        env={**os.environ, "FD": str(fd)},
        pass_fds=(fd,),
        stdout=subprocess.PIPE,
        text=True,
    )


def test_socket_activation_keeps_clients_across_a_restart(tmp_path: Path) -> None:
    """Like burrow-producer.socket: the socket outlives the producer, clients wait in its queue."""
    path = str(tmp_path / "activated.sock")
    listener = bind_socket(path, 0o660)
    first = _spawn_activated(listener, path)
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "activated"
        client = SocketClient(path, timeout=5)
        assert client.send(b"one") == b"reply:one"
        first.send_signal(signal.SIGTERM)
        assert first.wait(10) == 0
        # No producer runs now: connect() still succeeds, because the kernel queues the client
        # in the held socket's backlog, and the request waits there for the next producer.
        queued = UnixHTTPConnection(path, timeout=10)
        queued.connect()
        queued.request("POST", "/v1/requests", body=b"two")
        second = _spawn_activated(listener, path)
        try:
            response = queued.getresponse()
            assert (response.status, response.read()) == (200, b"reply:two")
        finally:
            queued.close()
            second.send_signal(signal.SIGTERM)
            assert second.wait(10) == 0
    finally:
        if first.poll() is None:
            first.kill()
        listener.close()
    # The child never owned the path: it must not have unlinked systemd's socket file.
    assert stat.S_ISSOCK(os.stat(path).st_mode)


def test_concurrent_requests_share_the_producer(api: HttpApi) -> None:
    client = SocketClient(api.address, timeout=5)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda n: client.send(b"c%d" % n), range(40)))
    assert replies == [b"reply:c%d" % n for n in range(40)]



def pipelined(api: HttpApi, requests: bytes, count: int) -> list[tuple[int, bytes]]:
    """Send ``requests`` in one write; the responses, as (status, body), until ``count`` came or
    the server closed the connection."""
    replies: list[tuple[int, bytes]] = []
    parser: Any = None

    class Responses:
        body = b""

        def on_body(self, data: bytes) -> None:
            self.body += data

        def on_message_complete(self) -> None:
            replies.append((parser.get_status_code(), self.body))
            self.body = b""

    parser = httptools.HttpResponseParser(Responses())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(api.address)
        sock.sendall(requests)
        while len(replies) < count and (chunk := sock.recv(65536)):
            parser.feed_data(chunk)
    return replies


def test_pipelined_requests_are_answered_in_order(api: HttpApi) -> None:
    """Three requests in one write; the first one's reply comes late, and still comes first."""
    requests = b"".join(
        b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        for body in (b"slow:0.3", b"p1", b"p2")
    )
    assert pipelined(api, requests, 3) == [(200, b"done"), (200, b"reply:p1"), (200, b"reply:p2")]


def test_a_refused_pipelined_request_is_answered_in_its_turn(api: HttpApi) -> None:
    """A head over the limits behind a slow request: its 431 waits for the slow answer, then the
    connection closes and nothing after it is served."""
    flood = b"".join(b"X-%d: 1\r\n" % n for n in range(200))
    requests = (b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\nslow:0.3"
                + b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + flood + b"\r\n"
                + b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    replies = pipelined(api, requests, 3)
    assert [status for status, _ in replies] == [200, 431]
    assert replies[0][1] == b"done" and json.loads(replies[1][1])["error"] == "request_header_fields_too_large"


def test_burst_reuses_keep_alive_connections(api: HttpApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """``burrow send --count`` opens one connection per concurrent request, not one per request."""
    opened = []
    connect = socketburst.KeepAliveClient._connect

    async def counting_connect(self: socketburst.KeepAliveClient) -> Any:
        opened.append(self)
        return await connect(self)

    monkeypatch.setattr(socketburst.KeepAliveClient, "_connect", counting_connect)
    result = socketburst.run_socket_burst(
        api.address, [b"a", b"b"], count=200, concurrency=3, show_progress=False,
        check=lambda body, reply: reply == b"reply:" + body,
    )
    assert (result.sent, result.failed) == (200, 0), result.line()
    assert len(opened) == 3


def test_burst_reconnects_after_the_server_closed_an_idle_connection(api: HttpApi) -> None:
    async def scenario() -> list[tuple[int, bytes]]:
        client = socketburst.KeepAliveClient(api.address, timeout=5)
        try:
            first = await client.post("/v1/requests", b"one")
            protocol = client._protocol
            assert protocol is not None
            deadline = time.monotonic() + 5
            while not protocol.closed and time.monotonic() < deadline:  # read_timeout (0.5 s) closes it
                await asyncio.sleep(0.02)
            assert protocol.closed
            return [first, await client.post("/v1/requests", b"two")]
        finally:
            client.close()

    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(scenario()) == [(200, b"reply:one"), (200, b"reply:two")]
    finally:
        loop.close()


def test_burst_counts_error_statuses(api: HttpApi) -> None:
    result = socketburst.run_socket_burst(api.address, [b"ok", b"remote"], count=10, concurrency=2, show_progress=False)
    assert (result.sent, result.failed) == (10, 5)
    assert set(result.errors) == {"HttpStatusError"}


def test_send_burst_summary_and_error_kinds(api: HttpApi, capsys: pytest.CaptureFixture[str]) -> None:
    """``burrow send --count``: the summary line, failures grouped by status and error code."""
    assert sendclient.main(["--socket", api.address, "--count", "20", "--concurrency", "4", "--quiet", "ok"]) == 0
    assert capsys.readouterr().out.startswith("20 requests, 0 failed, ")
    assert sendclient.main(["--socket", api.address, "--count", "6", "--concurrency", "2", "--quiet", "ok", "remote"]) == 1
    assert capsys.readouterr().out.rstrip().endswith("(502 remote_error: 3)")


def test_named_services_have_their_own_path(api: HttpApi, producer: FakeProducer) -> None:
    status, headers, body = call(api, "POST", "/v1/services/resize", b"img")
    assert (status, body) == (200, b"reply:img") and headers["x-burrow-correlation-id"]
    assert call(api, "POST", "/v1/services/default", b"x")[0] == 200
    assert call(api, "POST", "/v1/requests", b"y")[0] == 200
    assert producer.services == ["resize", None, None]


@pytest.mark.parametrize("path, submitted", [("/v1/services/nosuch", True), ("/v1/services/Bad.Name", False),
                                             ("/v1/services/", False)])
def test_unknown_service_is_404_unknown_service(api: HttpApi, producer: FakeProducer, path: str,
                                                 submitted: bool) -> None:
    status, _headers, body = call(api, "POST", path, b"x")
    document = json.loads(body)
    assert status == 404 and document["error"] == "unknown_service", document
    assert bool(producer.calls) == submitted
    assert call(api, "GET", "/v1/services/resize")[0] == 405


def test_burrow_send_service_reaches_the_service_path(api: HttpApi, producer: FakeProducer,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert sendclient.main(["--socket", api.address, "--service", "resize", "one"]) == 0
    assert sendclient.main(["--socket", api.address, "--service", "fraud", "--count", "4", "--quiet", "b"]) == 0
    assert sendclient.main(["--socket", api.address, "--service", "nosuch", "two"]) == 1
    assert producer.services == ["resize"] + ["fraud"] * 4 + ["nosuch"]
    assert "404 unknown_service" in capsys.readouterr().err


def test_x_burrow_key_reaches_the_producer_and_burrow_send_sets_it(api: HttpApi, producer: FakeProducer,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    status, _headers, _body = call(api, "POST", "/v1/services/fraud", b"a", headers={"X-Burrow-Key": "customer-7"})
    assert status == 200
    status, _headers, body = call(api, "POST", "/v1/services/fraud", b"b", headers={"X-Burrow-Key": "k" * 256})
    assert status == 400 and json.loads(body)["error"] == "bad_key", body
    assert call(api, "POST", "/v1/requests", b"c")[0] == 200
    assert sendclient.main(["--socket", api.address, "--service", "fraud", "--key", "customer-8", "d"]) == 0
    assert producer.keys == ["customer-7", None, "customer-8"]
    with pytest.raises(SystemExit):
        sendclient.main(["--socket", api.address, "--key", "", "e"])
    assert "1 to 255 bytes" in capsys.readouterr().err
