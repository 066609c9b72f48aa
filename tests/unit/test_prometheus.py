"""burrow.metrics hooks and burrow.daemon.prometheus: no-ops until enabled, then one meaning per series."""

from __future__ import annotations

import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from burrow import metrics
from burrow.amqp.queuestats import QueueCount
from burrow.daemon import prometheus
from burrow.errors import BrokerUnavailable, PublishError, Rejected, RemoteError, RequestTimeout, UnroutableError
from burrow.tools.localbroker import free_port

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def consumer_scrape() -> Iterator[int]:
    port = free_port()
    prometheus.enable("consumer", "127.0.0.1", port)
    yield port
    prometheus.disable()


@pytest.fixture
def producer_metrics() -> Iterator[prometheus.Metrics]:
    yield prometheus.enable("producer")
    prometheus.disable()


def _get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def test_disabled_calls_do_nothing() -> None:
    """After disable(), calls reach no collector: not even the ones that were enabled before."""
    before = prometheus.enable("producer")
    prometheus.disable()
    metrics.request_sent()
    metrics.reply_received(0.1, "timeout")
    metrics.request_failed(PublishError("x"))
    prometheus.http_answered(200)
    assert prometheus.active() is None
    assert prometheus.exposition() is None
    text = before.exposition().decode()
    samples = [line for line in text.splitlines() if line.startswith("burrow_producer_") and not line.startswith("#")]
    assert samples, text
    assert all(line.endswith(" 0.0") for line in samples), [line for line in samples if not line.endswith(" 0.0")]


def test_consumer_series_over_http(consumer_scrape: int) -> None:
    in_flight = 3
    prometheus.track_in_flight(lambda: in_flight)
    prometheus.track_connected(lambda: True)
    metrics.request_received()
    metrics.request_received()
    metrics.handler_finished(0.004, "ok")
    metrics.handler_finished(2.0, "error")
    metrics.reconnected()
    metrics.dead_lettered("too_large")
    metrics.dead_lettered("stale")
    metrics.dead_letter_notice("delivery_limit")
    text = _get(consumer_scrape)
    for line in (
        "burrow_consumer_requests_received_total 2.0",
        'burrow_consumer_requests_total{outcome="ok"} 1.0',
        'burrow_consumer_requests_total{outcome="error"} 1.0',
        "burrow_consumer_in_flight_requests 3.0",
        "burrow_broker_connected 1.0",
        "burrow_reconnects_total 1.0",
        'burrow_consumer_dead_lettered_total{reason="too_large"} 1.0',
        'burrow_consumer_dead_lettered_total{reason="stale"} 1.0',
        'burrow_consumer_dead_lettered_total{reason="malformed"} 0.0',
        'burrow_consumer_dead_letter_notices_total{reason="delivery_limit"} 1.0',
        'burrow_consumer_handler_duration_seconds_bucket{le="0.005"} 1.0',
        "burrow_consumer_handler_duration_seconds_count 2.0",
        'burrow_info{role="consumer"',
        "process_resident_memory_bytes ",
        "python_info{",
    ):
        assert line in text, line
    assert "burrow_producer_" not in text


def test_producer_timeouts_are_counted_but_not_observed(producer_metrics: prometheus.Metrics) -> None:
    metrics.reply_received(0.002, "ok")
    metrics.reply_received(0.003, "error")
    metrics.reply_received(30.0, "timeout")
    text = producer_metrics.exposition().decode()
    assert 'burrow_producer_requests_total{outcome="timeout"} 1.0' in text
    assert "burrow_producer_request_duration_seconds_count 2.0" in text
    assert 'burrow_producer_request_duration_seconds_bucket{le="10.0"} 2.0' in text
    assert "burrow_consumer_" not in text


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (RemoteError("ValueError", "bad"), "error"),
        (RequestTimeout("late"), "timeout"),
        (Rejected("stale", "too late"), "rejected"),
        (UnroutableError("no queue"), "unroutable"),
        (PublishError("nack"), "refused"),
        (BrokerUnavailable("closed"), "unavailable"),
        (RuntimeError("other"), "failed"),
    ],
)
def test_failures_get_stable_outcome_values(producer_metrics: prometheus.Metrics, error: BaseException, outcome: str) -> None:
    metrics.request_failed(error)
    assert f'burrow_producer_requests_total{{outcome="{outcome}"}} 1.0' in producer_metrics.exposition().decode()
    assert outcome in metrics.PRODUCER_OUTCOMES


def test_timeouts_the_broker_never_confirmed_have_their_own_counter(producer_metrics: prometheus.Metrics) -> None:
    metrics.reply_received(1.0, "timeout")
    metrics.reply_received(1.0, "timeout")
    metrics.timeout_unconfirmed()
    text = producer_metrics.exposition().decode()
    assert 'burrow_producer_requests_total{outcome="timeout"} 2.0' in text
    assert "burrow_producer_unconfirmed_timeouts_total 1.0" in text
    assert "unconfirmed" not in prometheus.Metrics("consumer").exposition().decode()


def test_http_answers_by_status_code(producer_metrics: prometheus.Metrics) -> None:
    for status in (200, 200, 504):
        prometheus.http_answered(status)
    text = producer_metrics.exposition().decode()
    assert 'burrow_producer_http_responses_total{code="200"} 2.0' in text
    assert 'burrow_producer_http_responses_total{code="504"} 1.0' in text
    assert 'burrow_producer_http_responses_total{code="503"} 0.0' in text


def test_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="'broker'"):
        prometheus.Metrics("broker")


def test_port_in_use_raises_but_keeps_collecting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            prometheus.enable("producer", "127.0.0.1", taken.getsockname()[1])
    try:
        metrics.request_sent()
        exposition = prometheus.exposition()
        assert exposition is not None and b"burrow_producer_requests_published_total 1.0" in exposition[0]
    finally:
        prometheus.disable()


def _families(role: str) -> set[str]:
    text = prometheus.Metrics(role).exposition().decode()
    return set(re.findall(r"^# TYPE (burrow_\S+) ", text, re.MULTILINE))


def test_readme_table_lists_every_burrow_series() -> None:
    """The README's metrics table names exactly the series the two daemons export."""
    documented = set(re.findall(r"^\| `(burrow_[a-z_]+)`", README.read_text(), re.MULTILINE))
    assert documented == _families("producer") | _families("consumer")


def test_process_series_without_proc_stat(tmp_path: Path) -> None:
    """Under ProcSubset=pid /proc/stat is hidden: the process series still come, with the right start time.

    The collector reads a /proc that has only ``self`` (as the hardened units see it: no ``stat``).
    """
    (tmp_path / "self").symlink_to("/proc/self")
    registry = prometheus.CollectorRegistry()
    prometheus.SandboxedProcessCollector(proc=str(tmp_path), registry=registry)
    reference = prometheus.CollectorRegistry()
    prometheus.ProcessCollector(registry=reference)
    start = registry.get_sample_value("process_start_time_seconds")
    expected = reference.get_sample_value("process_start_time_seconds")
    assert start is not None and expected is not None
    assert abs(start - expected) < 2.0
    assert registry.get_sample_value("process_resident_memory_bytes")


def test_failovers_exist_at_zero_once_a_connection_has_a_node(producer_metrics: prometheus.Metrics) -> None:
    metrics.broker_node("producer", "rabbit@one")
    assert producer_metrics.registry.get_sample_value("burrow_broker_failovers_total", {"connection": "producer"}) == 0.0
    metrics.broker_failover("producer")
    metrics.broker_node("producer", "rabbit@two")
    assert producer_metrics.registry.get_sample_value("burrow_broker_failovers_total", {"connection": "producer"}) == 1.0


def test_consumer_series_per_service_with_the_configured_names_only(consumer_scrape: int) -> None:
    """Each configured service's counters exist at zero from the start; its queue's ready requests
    and consumers come from the consumer's last look at the broker."""
    queues = {"resize": QueueCount("burrow.requests.resize", 3, 2)}
    prometheus.track_services(["resize", "pdf"], lambda: queues)
    metrics.handler_finished(0.01, "ok", "resize")
    metrics.handler_finished(0.01, "error", "resize")
    text = _get(consumer_scrape)
    for line in (
        'burrow_consumer_service_requests_total{outcome="ok",service="resize"} 1.0',
        'burrow_consumer_service_requests_total{outcome="error",service="resize"} 1.0',
        'burrow_consumer_service_requests_total{outcome="ok",service="pdf"} 0.0',
        'burrow_consumer_service_ready_requests{service="resize"} 3.0',
        'burrow_consumer_service_consumers{service="resize"} 2.0',
    ):
        assert line in text, line
    assert set(re.findall(r'service="([^"]+)"', text)) == {"resize", "pdf"}
