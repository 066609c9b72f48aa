"""Prometheus metrics for both daemons, opt-in, and free when switched off.

The engine calls the module-level functions (``metrics.request_sent()``,
``metrics.reply_received(seconds)``, ...) on its hot paths. Until :func:`enable` runs they return
after one global read, so the library and tests pay nothing. ``enable`` is called by the daemon's
service layer when the config's ``[metrics] enabled = true``: it builds the collectors in a private
registry and, when asked, serves them on ``http://host:port/metrics`` (localhost by default, and
the units' ``IPAddressAllow=localhost`` keeps it that way). The producer's Unix-socket API also
serves ``GET /metrics`` from :func:`exposition`.

Series (all prefixed ``burrow_``): ``requests_total`` (producer: published; consumer: received),
``replies_total{outcome}`` (ok, error, timeout), ``errors_total{kind}``, ``in_flight``,
``request_duration_seconds`` (producer: round trip; consumer: handler time), ``reconnects_total``,
``dead_lettered_total{reason}``, ``dead_letter_notices_total{reason}``, ``broker_connected`` and
``info{role,version}``; per broker connection (``connection`` is e.g. "producer" or
"consumer-publish"): ``broker_info{connection,node}`` (1 for the node it last connected to) and
``broker_failovers_total{connection}``. The in-flight and
connected gauges are read from the engine at scrape time (:func:`track_in_flight`).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from importlib import metadata
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST

logger = logging.getLogger(__name__)

#: Latency buckets (seconds) from sub-millisecond local round trips up to the default 30 s deadline.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: ``replies_total`` outcomes.
OUTCOMES = ("ok", "error", "rejected", "timeout")


class Metrics:
    """The collectors of one daemon, in their own registry (tests can build several)."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "burrow_requests", "Requests published (producer) or received (consumer).", registry=registry
        )
        self.replies = Counter(
            "burrow_replies", "Requests finished, by outcome.", ["outcome"], registry=registry
        )
        self.errors = Counter("burrow_errors", "Failures, by kind.", ["kind"], registry=registry)
        self.in_flight = Gauge(
            "burrow_in_flight", "Requests published and not yet answered, or handlers running.", registry=registry
        )
        self.latency = Histogram(
            "burrow_request_duration_seconds",
            "Producer: publish-to-reply time; consumer: handler time.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.reconnects = Counter("burrow_reconnects", "Broker connections re-established.", registry=registry)
        self.dead_lettered = Counter(
            "burrow_dead_lettered", "Requests rejected to the dead-letter exchange, by reason.", ["reason"],
            registry=registry,
        )
        self.dead_letter_notices = Counter(
            "burrow_dead_letter_notices",
            "Callers told by the dead-letter watcher that the broker dead-lettered their request, by reason.",
            ["reason"], registry=registry,
        )
        self.connected = Gauge("burrow_broker_connected", "1 while the broker connection is open.", registry=registry)
        self.broker_node = Gauge(
            "burrow_broker_info", "1 for the broker node each connection last connected to.",
            ["connection", "node"], registry=registry,
        )
        self.broker_nodes: dict[str, str] = {}
        self.failovers = Counter(
            "burrow_broker_failovers", "Connections made ready on another broker node than the last one.",
            ["connection"], registry=registry,
        )
        info = Info("burrow", "Which burrow daemon this is.", registry=registry)
        info.info({"role": role, "version": _version()})
        for outcome in OUTCOMES:
            self.replies.labels(outcome=outcome)

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
        metrics = Metrics(role)
        _active = metrics
        if port is not None:
            address = host or "127.0.0.1"
            if not _is_loopback(address):
                logger.warning("Serving metrics on non-loopback address %s; anyone who can reach it can read them", address)
            server, _thread = start_http_server(port, addr=address, registry=metrics.registry)
            _servers.append(server)
            logger.info("Prometheus metrics on http://%s:%d/metrics", address, port)
        return metrics


def disable() -> None:
    """Stop collecting and close any HTTP server (tests, daemon shutdown)."""
    global _active
    with _lock:
        _active = None
        while _servers:
            server = _servers.pop()
            server.shutdown()
            server.server_close()


def active() -> Metrics | None:
    """The enabled collectors, or ``None``."""
    return _active


def exposition() -> tuple[bytes, str] | None:
    """``(body, content type)`` for a ``/metrics`` response, or ``None`` when metrics are off."""
    metrics = _active
    if metrics is None:
        return None
    return metrics.exposition(), CONTENT_TYPE_LATEST


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def request_sent() -> None:
    """Producer published a request, or consumer received one."""
    metrics = _active
    if metrics is not None:
        metrics.requests.inc()


def request_received() -> None:
    """Consumer took a request from the queue (same series as :func:`request_sent`)."""
    request_sent()


def reply_received(seconds: float, outcome: str = "ok") -> None:
    """A request finished after ``seconds``; ``outcome`` is one of :data:`OUTCOMES`."""
    metrics = _active
    if metrics is not None:
        metrics.replies.labels(outcome=outcome).inc()
        metrics.latency.observe(seconds)


def error(kind: str) -> None:
    """Count a failure of ``kind`` (e.g. "remote", "timeout", "publish", "handler", "unavailable")."""
    metrics = _active
    if metrics is not None:
        metrics.errors.labels(kind=kind).inc()


def track_in_flight(read: Callable[[], float]) -> None:
    """Read the in-flight count from ``read`` at every scrape instead of setting it on each change."""
    metrics = _active
    if metrics is not None:
        metrics.in_flight.set_function(read)


def track_connected(read: Callable[[], bool]) -> None:
    """Read broker connectivity from ``read`` at every scrape."""
    metrics = _active
    if metrics is not None:
        metrics.connected.set_function(lambda: 1.0 if read() else 0.0)


def reconnected() -> None:
    """The broker connection came back after a loss."""
    metrics = _active
    if metrics is not None:
        metrics.reconnects.inc()


def broker_node(connection: str, node: str) -> None:
    """``connection`` is now ready on broker ``node`` (``host:port``): move its info series there."""
    metrics = _active
    if metrics is None:
        return
    with _lock:
        previous = metrics.broker_nodes.get(connection)
        if previous is not None and previous != node:
            metrics.broker_node.remove(connection, previous)
        metrics.broker_nodes[connection] = node
    metrics.broker_node.labels(connection=connection, node=node).set(1)


def broker_failover(connection: str) -> None:
    """``connection`` came back on another broker node than the one it lost."""
    metrics = _active
    if metrics is not None:
        metrics.failovers.labels(connection=connection).inc()


def dead_lettered(reason: str) -> None:
    """The consumer rejected a request to the dead-letter exchange for ``reason`` (a reject code)."""
    metrics = _active
    if metrics is not None:
        metrics.dead_lettered.labels(reason=reason).inc()


def dead_letter_notice(reason: str) -> None:
    """The dead-letter watcher told a caller that the broker dead-lettered its request."""
    metrics = _active
    if metrics is not None:
        metrics.dead_letter_notices.labels(reason=reason).inc()


__all__ = [
    "LATENCY_BUCKETS",
    "OUTCOMES",
    "Metrics",
    "active",
    "broker_failover",
    "broker_node",
    "dead_letter_notice",
    "dead_lettered",
    "disable",
    "enable",
    "error",
    "exposition",
    "reconnected",
    "reply_received",
    "request_received",
    "request_sent",
    "track_connected",
    "track_in_flight",
]
