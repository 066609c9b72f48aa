"""burrow.daemon.notify against a real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from burrow.daemon.notify import Notifier, StatusReporter, StatusSnapshot


class Clock:
    """A clock the test advances by hand, so watchdog timing is exact rather than slept."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _receive(sock: socket.socket, timeout: float = 2.0) -> dict[str, str]:
    sock.settimeout(timeout)
    data = sock.recv(65536).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def _nothing_pending(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        sock.recv(65536)
    except TimeoutError:
        return True
    return False


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket bound at a file path or an abstract name, exported as NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify")
        sock.bind(address)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
    else:
        name = f"burrow-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def test_ready_with_status(notify_socket: socket.socket) -> None:
    notifier = Notifier()
    assert notifier.enabled
    notifier.ready("connected to localhost:5672")
    assert _receive(notify_socket) == {"READY": "1", "STATUS": "connected to localhost:5672"}


def test_status_is_one_line(notify_socket: socket.socket) -> None:
    notifier = Notifier()
    notifier.status("broker unreachable\nretrying")
    assert _receive(notify_socket) == {"STATUS": "broker unreachable retrying"}


def test_reloading_and_stopping(notify_socket: socket.socket) -> None:
    notifier = Notifier()
    notifier.reloading("reloading /etc/burrow/consumer.toml")
    fields = _receive(notify_socket)
    assert fields["RELOADING"] == "1"
    assert int(fields["MONOTONIC_USEC"]) > 0
    assert fields["STATUS"] == "reloading /etc/burrow/consumer.toml"
    notifier.stopping()
    assert _receive(notify_socket) == {"STOPPING": "1"}


def test_watchdog_pings_at_half_the_interval(notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    clock = Clock()
    notifier = Notifier(clock=clock)
    assert notifier.watchdog_interval == 2.0
    assert notifier.watchdog_tick() is True
    assert _receive(notify_socket) == {"WATCHDOG": "1"}
    clock.now += 1.9
    assert notifier.watchdog_tick() is False
    assert _nothing_pending(notify_socket)
    clock.now += 0.1
    assert notifier.watchdog_tick() is True
    assert _receive(notify_socket) == {"WATCHDOG": "1"}


def test_watchdog_stops_when_the_loop_stops_ticking(notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pings come only from watchdog_tick(): no tick, no ping, however much time passes."""
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    clock = Clock()
    notifier = Notifier(clock=clock)
    notifier.watchdog_tick()
    _receive(notify_socket)
    clock.now += 60
    assert _nothing_pending(notify_socket)


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [("", None, None), ("0", None, None), ("abc", None, None), ("1000000", "1", None), ("1000000", "self", 0.5)],
)
def test_watchdog_enabled_only_for_this_process(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch, usec: str, pid: str | None, expected: float | None
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)
    notifier = Notifier()
    assert notifier.watchdog_interval == expected
    assert notifier.watchdog_tick() is (expected is not None)


def test_without_notify_socket_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    notifier.ready("x")
    notifier.stopping()
    assert notifier.watchdog_tick() is False


def test_unreachable_socket_does_not_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd gone (socket file missing): the daemon keeps running; messages are dropped."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "missing"))
    notifier = Notifier()
    notifier.ready("x")
    notifier.status("y")


def test_status_line_format_and_rate(notify_socket: socket.socket) -> None:
    clock = Clock()
    snapshots = iter(
        [
            StatusSnapshot(processed=0, in_flight=0, connected=False),
            StatusSnapshot(processed=1640, in_flight=35, connected=True),
            StatusSnapshot(processed=2000, in_flight=3, connected=True, failed=7, detail="draining"),
        ]
    )
    reporter = StatusReporter(Notifier(), lambda: next(snapshots), interval=2.0, clock=clock)
    assert reporter.report() == "processed 0, in flight 0, 0 req/s, broker unreachable"
    assert _receive(notify_socket)["STATUS"] == "processed 0, in flight 0, 0 req/s, broker unreachable"
    clock.now += 2.0
    assert reporter.report() == "processed 1640, in flight 35, 820 req/s, broker connected"
    clock.now += 4.0
    assert reporter.report() == "processed 2000, failed 7, in flight 3, 90 req/s, draining"


def test_status_reporter_thread_sends_periodically(notify_socket: socket.socket) -> None:
    count = 0

    def snapshot() -> StatusSnapshot:
        nonlocal count
        count += 1
        if count == 2:
            raise RuntimeError("a broken counter must not stop the reporter")
        return StatusSnapshot(processed=count, in_flight=0, connected=True)

    reporter = StatusReporter(Notifier(), snapshot, interval=0.05)
    reporter.start()
    try:
        first = _receive(notify_socket)["STATUS"]
        second = _receive(notify_socket)["STATUS"]
    finally:
        reporter.stop()
    assert first.startswith("processed 1,")
    assert second.startswith("processed 3,")
