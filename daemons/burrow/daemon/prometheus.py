"""Prometheus metrics for both daemons: opt-in, in a private registry, one meaning per series.

:func:`enable` is called by the service layer when the config's ``[metrics] enabled = true``. It
builds the collectors of one role, installs them as the engines' recorder (:mod:`burrow.metrics`)
and, when given a port, serves them on ``http://host:port/metrics`` (localhost by default; the
units' ``IPAddressAllow=localhost`` keeps it that way). The producer's Unix-socket API serves the
same text from :func:`exposition` and counts its answers with :func:`http_answered`.

Every series is named after the process that produces it, so a name never means two things:

- both: ``burrow_info{role,version}``, ``burrow_broker_connected``, ``burrow_reconnects_total``,
  and the standard ``process_*`` and ``python_*`` series;
- producer: ``burrow_producer_requests_published_total``,
  ``burrow_producer_requests_total{outcome}``, ``burrow_producer_unconfirmed_timeouts_total``,
  ``burrow_producer_request_duration_seconds``
  (submit to reply, answered requests only), ``burrow_producer_in_flight_requests``,
  ``burrow_producer_http_responses_total{code}``;
- consumer: ``burrow_consumer_requests_received_total``, ``burrow_consumer_requests_total{outcome}``,
  ``burrow_consumer_handler_duration_seconds``, ``burrow_consumer_in_flight_requests``,
  ``burrow_consumer_dead_lettered_total{reason}``, ``burrow_consumer_dead_letter_notices_total{reason}``,
  ``burrow_consumer_service_requests_total{service,outcome}``,
  ``burrow_consumer_service_ready_requests{service}``, ``burrow_consumer_service_consumers{service}``
  (the ``service`` label takes only the names the consumer's configuration serves).

The README's metrics table is the reference; ``tests/unit/test_prometheus.py`` checks that the two
agree and that ``promtool check metrics`` finds nothing to say about a scrape.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from burrow import metrics as hooks
from burrow import protocol

logger = logging.getLogger(__name__)

# No ``*_created`` series: they double the scrape and no rule or panel reads them. The switch is
# process-wide, and this module is imported only by the daemons, which own their process.
disable_created_metrics()

#: Latency buckets (seconds) from sub-millisecond local round trips up to the default 30 s deadline.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: Status codes of the producer's HTTP API, created at zero so that ratios exist before the first error.
HTTP_CODES = (200, 400, 404, 405, 408, 411, 413, 429, 500, 502, 503, 504)

#: Reasons the consumer dead-letters a request, created at zero so that rates exist from the start.
DEAD_LETTER_REASONS = (
    protocol.REJECT_MALFORMED, protocol.REJECT_TOO_LARGE, protocol.REJECT_CONTENT_TYPE, protocol.REJECT_INVALID_UTF8,
    protocol.REJECT_STALE, protocol.REJECT_REPLY_UNROUTABLE, protocol.REJECT_REPLY_DEFAULT_EXCHANGE,
)


@dataclass(frozen=True)
class _RoleSeries:
    """Names and help texts of the four series both roles have, each with its own meaning."""

    sent: tuple[str, str]
    finished: tuple[str, str]
    latency: tuple[str, str]
    in_flight: tuple[str, str]
    outcomes: tuple[str, ...]


#: The daemons' roles (the ``role`` label of ``burrow_info``) and the series each one exports.
ROLES: dict[str, _RoleSeries] = {
    "producer": _RoleSeries(
        sent=("burrow_producer_requests_published",
              "Request messages published to the broker (republishes after a reconnect included)."),
        finished=("burrow_producer_requests",
                  "Requests finished, by outcome (ok, error reply, timeout, unroutable, refused, unavailable, failed)."),
        latency=("burrow_producer_request_duration_seconds",
                 "Submit-to-reply time of answered requests (ok and error replies; timeouts are not observed)."),
        in_flight=("burrow_producer_in_flight_requests", "Requests submitted and not yet finished."),
        outcomes=hooks.PRODUCER_OUTCOMES,
    ),
    "consumer": _RoleSeries(
        sent=("burrow_consumer_requests_received",
              "Request messages taken from the request queue (redeliveries included)."),
        finished=("burrow_consumer_requests",
                  "Requests the handler finished, by outcome (ok, or error: it raised and an error reply was sent)."),
        latency=("burrow_consumer_handler_duration_seconds", "Time the handler ran, per request."),
        in_flight=("burrow_consumer_in_flight_requests", "Requests taken from the queue and not yet settled."),
        outcomes=hooks.CONSUMER_OUTCOMES,
    ),
}


class SandboxedProcessCollector(ProcessCollector):
    """The standard ``process_*`` series, also under the units' ``ProcSubset=pid``.

    prometheus_client takes the boot time from ``btime`` in ``/proc/stat`` and, when it cannot read
    that file, exports no process series at all; the hardened units hide it. The clock gives the
    same number: now minus the time since boot on ``CLOCK_BOOTTIME``, the clock that the start
    times in ``/proc/<pid>/stat`` count in.
    """

    def _boot_time(self) -> float:
        try:
            btime = super()._boot_time()
        except OSError:
            btime = None
        if btime is None:
            return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        return float(btime)


class ServiceQueues:
    """Each served service's queue as the consumer last saw it (:mod:`burrow.amqp.queuestats`),
    read at every scrape from ``read`` (``service -> count with .ready and .consumers``)."""

    def __init__(self) -> None:
        self.read: Callable[[], Mapping[str, Any]] = dict

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ready = GaugeMetricFamily("burrow_consumer_service_ready_requests",
                                  "Requests waiting in each served service's queue, not yet delivered.", labels=["service"])
        consumers = GaugeMetricFamily("burrow_consumer_service_consumers",
                                      "Consumers registered on each served service's queue, every daemon's.",
                                      labels=["service"])
        for name, count in self.read().items():
            ready.add_metric([name], count.ready)
            consumers.add_metric([name], count.consumers)
        yield ready
        yield consumers


class Metrics:
    """The collectors of one daemon in their own registry (tests can build several); a recorder."""

    def __init__(self, role: str) -> None:
        series = ROLES.get(role)
        if series is None:
            raise ValueError(f"metrics role must be one of {', '.join(ROLES)}, got {role!r}")
        self.role = role
        self.registry = registry = CollectorRegistry(auto_describe=True)
        SandboxedProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        Info("burrow", "Which burrow daemon this is (always 1).", registry=registry).info(
            {"role": role, "version": _version()}
        )
        self.connected = Gauge("burrow_broker_connected", "1 while the broker connection is open, else 0.", registry=registry)
        self.reconnects = Counter("burrow_reconnects", "Broker connections re-established after a loss.", registry=registry)
        self.node = Gauge(
            "burrow_broker_info", "1 for the broker node each connection last connected to.", ["connection", "node"],
            registry=registry,
        )
        self.nodes: dict[str, str] = {}
        self.failovers = Counter(
            "burrow_broker_failovers", "Connections made ready on another broker node than the last one.",
            ["connection"], registry=registry,
        )
        self.sent = Counter(*series.sent, registry=registry)
        self.finished = Counter(*series.finished, ["outcome"], registry=registry)
        self.latency = Histogram(*series.latency, buckets=LATENCY_BUCKETS, registry=registry)
        self.in_flight = Gauge(*series.in_flight, registry=registry)
        for outcome in series.outcomes:
            self.finished.labels(outcome=outcome)
        self.http: Counter | None = None
        self.unconfirmed: Counter | None = None
        self.dead_letters: Counter | None = None
        self.notices: Counter | None = None
        self.service_queues: ServiceQueues | None = None
        self.service_finished: Counter | None = None
        if role == "producer":
            self.http = Counter(
                "burrow_producer_http_responses", "HTTP API responses, by status code.", ["code"], registry=registry
            )
            for code in HTTP_CODES:
                self.http.labels(code=str(code))
            self.unconfirmed = Counter(
                "burrow_producer_unconfirmed_timeouts",
                "Requests whose deadline passed before the broker confirmed their publish (also outcome timeout).",
                registry=registry,
            )
        else:
            self.dead_letters = Counter(
                "burrow_consumer_dead_lettered", "Requests rejected to the dead-letter exchange, by reason.", ["reason"],
                registry=registry,
            )
            for reason in DEAD_LETTER_REASONS:
                self.dead_letters.labels(reason=reason)
            self.notices = Counter(
                "burrow_consumer_dead_letter_notices",
                "Callers told by the dead-letter watcher that the broker dead-lettered their request, by reason.",
                ["reason"], registry=registry,
            )
            self.notices.labels(reason=protocol.REJECT_DELIVERY_LIMIT)
            self.service_queues = ServiceQueues()
            registry.register(self.service_queues)
            self.service_finished = Counter(
                "burrow_consumer_service_requests", "Requests each served service's handler finished, by outcome.",
                ["service", "outcome"], registry=registry,
            )

    # -- the engines' events (burrow.metrics.Recorder) ----------------------------------------

    def request_sent(self) -> None:
        self.sent.inc()

    def request_received(self) -> None:
        self.sent.inc()

    def request_finished(self, outcome: str, seconds: float | None) -> None:
        self.finished.labels(outcome=outcome).inc()
        if seconds is not None:
            self.latency.observe(seconds)

    def service_request_finished(self, service: str, outcome: str) -> None:
        if self.service_finished is not None:
            self.service_finished.labels(service=service, outcome=outcome).inc()

    def timeout_unconfirmed(self) -> None:
        if self.unconfirmed is not None:
            self.unconfirmed.inc()

    def declare_services(self, services: list[str]) -> None:
        """Create each service's series at zero, so that rates exist before its first request."""
        if self.service_finished is not None:
            for service in services:
                for outcome in hooks.CONSUMER_OUTCOMES:
                    self.service_finished.labels(service=service, outcome=outcome)

    def dead_lettered(self, reason: str) -> None:
        if self.dead_letters is not None:
            self.dead_letters.labels(reason=reason).inc()

    def dead_letter_notice(self, reason: str) -> None:
        if self.notices is not None:
            self.notices.labels(reason=reason).inc()

    def reconnected(self) -> None:
        self.reconnects.inc()

    def broker_node(self, connection: str, node: str) -> None:
        with _lock:
            previous = self.nodes.get(connection)
            if previous is not None and previous != node:
                self.node.remove(connection, previous)
            self.nodes[connection] = node
        self.node.labels(connection=connection, node=node).set(1)
        # Created at zero with the connection, so that increase() has a series before the first failover.
        self.failovers.labels(connection=connection)

    def broker_failover(self, connection: str) -> None:
        self.failovers.labels(connection=connection).inc()

    # -- the daemon's own --------------------------------------------------------------------

    def http_answered(self, status: int) -> None:
        if self.http is not None:
            self.http.labels(code=str(status)).inc()

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


def _version() -> str:
    try:
        return metadata.version("burrow")
    except metadata.PackageNotFoundError:
        return "unknown"


_active: Metrics | None = None
_lock = threading.Lock()
_servers: list[WSGIServer] = []


def enable(role: str, host: str | None = None, port: int | None = None) -> Metrics:
    """Start collecting for ``role`` ("producer" or "consumer"); serve HTTP when ``port`` is given.

    A non-loopback ``host`` is allowed (a monitoring network) but logged, since the metrics have no
    authentication. Raises ``OSError`` when the port is taken; collection stays enabled, so the
    caller may log it and go on (the producer's socket still serves ``/metrics``).
    """
    global _active
    with _lock:
        collectors = Metrics(role)
        _active = collectors
        hooks.install(collectors)
        if port is not None:
            address = host or "127.0.0.1"
            if not _is_loopback(address):
                logger.warning("Serving metrics on non-loopback address %s; anyone who can reach it can read them", address)
            server, _thread = start_http_server(port, addr=address, registry=collectors.registry)
            _servers.append(server)
            logger.info("Prometheus metrics on http://%s:%d/metrics", address, port)
        return collectors


def disable() -> None:
    """Stop collecting and close any HTTP server (tests, daemon shutdown)."""
    global _active
    with _lock:
        _active = None
        hooks.install(None)
        while _servers:
            server = _servers.pop()
            server.shutdown()
            server.server_close()


def active() -> Metrics | None:
    """The enabled collectors, or ``None``."""
    return _active


def exposition() -> tuple[bytes, str] | None:
    """``(body, content type)`` for a ``/metrics`` response, or ``None`` when metrics are off."""
    collectors = _active
    if collectors is None:
        return None
    return collectors.exposition(), CONTENT_TYPE_LATEST


def http_answered(status: int) -> None:
    """The producer's HTTP API sent a response with ``status`` (call once per response)."""
    collectors = _active
    if collectors is not None:
        collectors.http_answered(status)


def track_in_flight(read: Callable[[], float]) -> None:
    """Read the in-flight count from ``read`` at every scrape instead of setting it on each change."""
    collectors = _active
    if collectors is not None:
        collectors.in_flight.set_function(read)


def track_connected(read: Callable[[], bool]) -> None:
    """Read broker connectivity from ``read`` at every scrape."""
    collectors = _active
    if collectors is not None:
        collectors.connected.set_function(lambda: 1.0 if read() else 0.0)


def track_services(services: list[str], read: Callable[[], Mapping[str, Any]]) -> None:
    """The consumer serves ``services``: create their series, and read their queues (ready
    requests, consumers) from ``read`` at every scrape."""
    collectors = _active
    if collectors is not None and collectors.service_queues is not None:
        collectors.declare_services(services)
        collectors.service_queues.read = read


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = [
    "LATENCY_BUCKETS",
    "ROLES",
    "Metrics",
    "active",
    "disable",
    "enable",
    "exposition",
    "http_answered",
    "track_connected",
    "track_in_flight",
    "track_services",
]
