"""burrow.metrics: no-ops until enabled, then real series on a loopback HTTP port."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator

import pytest

from burrow import metrics


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def scrape() -> Iterator[tuple[int, metrics.Metrics]]:
    port = _free_port()
    collectors = metrics.enable("consumer", "127.0.0.1", port)
    yield port, collectors
    metrics.disable()


def _get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def test_disabled_calls_do_nothing() -> None:
    metrics.disable()
    metrics.request_sent()
    metrics.reply_received(0.1, "timeout")
    metrics.error("remote")
    assert metrics.active() is None
    assert metrics.exposition() is None


def test_series_over_http(scrape: tuple[int, metrics.Metrics]) -> None:
    port, _ = scrape
    in_flight = 3
    metrics.track_in_flight(lambda: in_flight)
    metrics.track_connected(lambda: True)
    metrics.request_received()
    metrics.request_received()
    metrics.reply_received(0.004, "ok")
    metrics.reply_received(2.0, "error")
    metrics.error("handler")
    metrics.reconnected()
    metrics.dead_lettered("too_large")
    text = _get(port)
    for line in (
        "burrow_requests_total 2.0",
        'burrow_replies_total{outcome="ok"} 1.0',
        'burrow_replies_total{outcome="error"} 1.0',
        'burrow_replies_total{outcome="timeout"} 0.0',
        'burrow_errors_total{kind="handler"} 1.0',
        "burrow_in_flight 3.0",
        "burrow_broker_connected 1.0",
        "burrow_reconnects_total 1.0",
        'burrow_dead_lettered_total{reason="too_large"} 1.0',
        'burrow_request_duration_seconds_bucket{le="0.005"} 1.0',
        "burrow_request_duration_seconds_count 2.0",
        'burrow_info{role="consumer"',
    ):
        assert line in text, line


def test_port_in_use_raises_but_keeps_collecting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            metrics.enable("producer", "127.0.0.1", taken.getsockname()[1])
    try:
        metrics.request_sent()
        exposition = metrics.exposition()
        assert exposition is not None and b"burrow_requests_total 1.0" in exposition[0]
    finally:
        metrics.disable()
