"""The shipped daemons under load, driven and counted from outside like an operator's clients.

Used by the daemon fault scenarios (test_fault_daemons.py) and the soak (scripts/soak.py), which
start the daemons with :class:`processes.Daemon` (tests/support/processes.py). :class:`HttpLoad`
is a set of HTTP clients that each hold one request open at a time on the producer's Unix socket
(``POST /v1/requests``, the documented contract) and keep, per request id, what came back: the
status, the body, whether anything followed the first answer on the connection (a second answer),
when it was sent and answered, the correlation id the producer gave it and, for a 504, the
answer's ``"confirmed"`` (what explain.py needs to explain a 503 or a 504). A connection the
kernel refused, or a socket that is gone, is ``refused``: the producer daemon is not there.
Neither user needs pytest.
"""

from __future__ import annotations

import dataclasses
import http.client
import io
import logging
import socket
import threading
import time

from explain import said_confirmed
from faultcheck import Outcome, expected_reply, wait_for, watch

logger = logging.getLogger(__name__)

#: Seconds a client waits beyond the request's own timeout before it calls the request lost.
CLIENT_GRACE = 10.0


def health(path: str) -> int | None:
    """The status of ``GET /v1/health`` on the producer's socket, None if nothing answers."""
    try:
        status, _, _, _ = exchange(path, b"GET /v1/health HTTP/1.1\r\nHost: burrow\r\nConnection: close\r\n\r\n", 5)
    except OSError:
        return None
    return status


class _KeptOpen(io.BytesIO):
    """The bytes of a connection; ``http.client`` closes its file after the body, this one keeps
    the rest readable (to see whether a second answer followed)."""

    def close(self) -> None:
        pass


def exchange(path: str, raw: bytes, timeout: float) -> tuple[int, dict[str, str], bytes, bytes]:
    """Send ``raw`` on a fresh connection, read to EOF, parse the first response; returns its
    status, headers and body, and whatever bytes followed it on the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(raw)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    stream = _KeptOpen(b"".join(chunks))

    class _Wire:
        def makefile(self, *_args: object, **_kwargs: object) -> io.BytesIO:
            return stream

    response = http.client.HTTPResponse(_Wire())  # type: ignore[arg-type]
    response.begin()
    body = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body, stream.read()


class HttpLoad:
    """``clients`` HTTP clients sending ``count`` requests ``<prefix>-<n>`` at up to ``rate`` per
    second in all, each with ``X-Burrow-Request-Id`` set to its body, counted per request."""

    def __init__(self, socket_path: str, count: int, *, prefix: str, rate: float, clients: int = 16,
                 timeout: float = 30.0, deadline: float | None = None) -> None:
        self.socket_path = socket_path
        self.count = count
        self.prefix = prefix
        self.interval = 1.0 / rate
        self.clients = clients
        self.timeout = timeout
        self.deadline = deadline  # time.monotonic() after which no new request starts
        self.results: dict[bytes, Outcome] = {}
        self.in_flight: dict[bytes, float] = {}
        self.latencies: list[float] = []
        self._next = 0
        self._next_at = 0.0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, name=f"http-{prefix}-{n}", daemon=True) for n in range(clients)]
        self.started = 0.0

    def start(self) -> "HttpLoad":
        self.started = self._next_at = time.monotonic()
        watch(self)
        for thread in self._threads:
            thread.start()
        return self

    def _take(self) -> int | None:
        """The next request number and its start time, paced to ``rate`` across all clients."""
        with self._lock:
            if self._next >= self.count or (self.deadline is not None and time.monotonic() >= self.deadline):
                return None
            number = self._next
            self._next += 1
            start_at = self._next_at
            self._next_at = max(self._next_at + self.interval, time.monotonic() - 1.0)
        delay = start_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return number

    def _client(self) -> None:
        while (number := self._take()) is not None:
            body = f"{self.prefix}-{number}".encode()
            self._send(body)

    def _send(self, body: bytes) -> None:
        raw = (f"POST /v1/requests HTTP/1.1\r\nHost: burrow\r\nConnection: close\r\n"
               f"Content-Length: {len(body)}\r\nX-Burrow-Timeout: {self.timeout:g}\r\n"
               f"X-Burrow-Request-Id: {body.decode()}\r\n\r\n").encode() + body
        started = time.monotonic()
        sent_at = time.time()
        with self._lock:
            self.in_flight[body] = sent_at
        headers: dict[str, str] = {}
        try:
            status, headers, reply, trailing = exchange(self.socket_path, raw, self.timeout + CLIENT_GRACE)
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            outcome = Outcome(body, "refused", 0, f"not accepted: {exc}")  # nothing listening: the daemon is gone
        except (OSError, http.client.HTTPException) as exc:
            outcome = Outcome(body, "lost", 0, f"{type(exc).__name__}: {exc}")
        else:
            answers = 1 + bool(trailing)
            if status == 200:
                result = "answered" if reply == expected_reply(body) else "unexpected"
                outcome = Outcome(body, result, answers, f"got {reply[:60]!r}")
            elif status in (503, 504):
                outcome = Outcome(body, str(status), answers, reply[:100].decode(errors="replace"),
                                  confirmed=said_confirmed(reply) if status == 504 else None)
            else:
                outcome = Outcome(body, "lost", answers, f"HTTP {status}: {reply[:100]!r}")
        outcome = dataclasses.replace(outcome, sent_at=sent_at, done_at=time.time(), timeout=self.timeout,
                                      correlation_id=headers.get("x-burrow-correlation-id", ""))
        with self._lock:
            del self.in_flight[body]
            self.results[body] = outcome
            if outcome.result == "answered":
                self.latencies.append(time.monotonic() - started)

    def stop(self) -> None:
        """Start no more requests (those started are still counted)."""
        with self._lock:
            self.deadline = time.monotonic()

    def answered(self) -> int:
        with self._lock:
            return sum(outcome.result == "answered" for outcome in self.results.values())

    def wait_answered(self, at_least: int, timeout: float) -> None:
        wait_for(lambda: self.answered() >= at_least, timeout, f"{at_least} answers of {self.prefix}")

    def finish(self, timeout: float) -> list[Outcome]:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = sum(thread.is_alive() for thread in self._threads)
        assert not alive, f"{self.prefix}: {alive} clients still waiting after {timeout}s"
        return self.outcomes()

    def outcomes(self) -> list[Outcome]:
        """Every request's outcome; one still waiting for its answer is ``lost``, "unresolved"."""
        with self._lock:
            waiting = [Outcome(body, "lost", 0, "unresolved", sent_at=sent_at, timeout=self.timeout)
                       for body, sent_at in self.in_flight.items()]
            return list(self.results.values()) + waiting

