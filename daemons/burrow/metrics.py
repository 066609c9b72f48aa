"""The engines' measurement hooks: what happened, reported to whoever listens (usually nobody).

The producer and consumer call these module-level functions (``metrics.request_sent()``,
``metrics.reply_received(seconds, "ok")`` in the producer, ``metrics.handler_finished(seconds, "ok")``
in the consumer, ...) on their hot paths. Until a :class:`Recorder` is
installed they return after one global read, so the library and its tests pay nothing and the core
library needs no Prometheus client. The daemons install the Prometheus recorder
(:mod:`burrow.daemon.prometheus`) when the config says ``[metrics] enabled = true``; that module
decides the series names and labels, this one only the events.
"""

from __future__ import annotations

from typing import Protocol

from burrow.errors import BrokerUnavailable, PublishError, Rejected, RemoteError, RequestTimeout, UnroutableError

#: How a producer's request ended (the ``outcome`` label): a reply, an error reply, a rejection
#: notice (dead-lettered), its deadline, its caller cancelled it, no queue bound, the broker refused
#: it, the producer closed, or anything else.
PRODUCER_OUTCOMES = ("ok", "error", "rejected", "timeout", "cancelled", "unroutable", "refused", "unavailable",
                     "failed")

#: How a consumer's handler ended: it returned, or it raised (an error reply was sent).
CONSUMER_OUTCOMES = ("ok", "error")


class Recorder(Protocol):
    """What an installed recorder receives; each method is called from the engine's threads."""

    def request_sent(self) -> None:
        """The producer published a request message (a republish after a reconnect included)."""

    def request_received(self) -> None:
        """The consumer took a request message from the queue (a redelivery included)."""

    def request_finished(self, outcome: str, seconds: float | None) -> None:
        """A request ended with ``outcome``; ``seconds`` is its latency, or ``None`` if it got no answer."""

    def service_request_finished(self, service: str, outcome: str) -> None:
        """The consumer's handler of ``service`` (a configured name) ended with ``outcome``."""

    def timeout_unconfirmed(self) -> None:
        """A producer request's deadline passed before the broker confirmed its publish (its
        ``timeout`` outcome is reported too)."""

    def dead_lettered(self, reason: str) -> None:
        """The consumer rejected a request to the dead-letter exchange for ``reason``."""

    def dead_letter_notice(self, reason: str) -> None:
        """The dead-letter watcher told a caller that the broker dead-lettered its request."""

    def reconnected(self) -> None:
        """A broker connection came back after a loss."""

    def broker_node(self, connection: str, node: str) -> None:
        """``connection`` is now ready on broker ``node`` (``host:port``)."""

    def broker_failover(self, connection: str) -> None:
        """``connection`` came back on another broker node than the one it lost."""


_recorder: Recorder | None = None


def install(recorder: Recorder | None) -> None:
    """Send every later event to ``recorder`` (``None``: stop recording)."""
    global _recorder
    _recorder = recorder


def request_sent() -> None:
    """Producer published a request."""
    recorder = _recorder
    if recorder is not None:
        recorder.request_sent()


def request_received() -> None:
    """Consumer took a request from the queue."""
    recorder = _recorder
    if recorder is not None:
        recorder.request_received()


def reply_received(seconds: float, outcome: str = "ok") -> None:
    """Producer: a request was answered after ``seconds`` ("ok" or "error"), rejected, or timed out.

    Only answers are latencies: a timeout would measure the deadline, a rejection the dead-lettering.
    """
    recorder = _recorder
    if recorder is not None:
        recorder.request_finished(outcome, seconds if outcome in ("ok", "error") else None)


def handler_finished(seconds: float, outcome: str, service: str = "default") -> None:
    """Consumer: the handler of ``service`` returned ("ok") or raised ("error") after ``seconds``."""
    recorder = _recorder
    if recorder is not None:
        recorder.request_finished(outcome, seconds)
        recorder.service_request_finished(service, outcome)


def timeout_unconfirmed() -> None:
    """Producer: a request timed out that the broker never confirmed."""
    recorder = _recorder
    if recorder is not None:
        recorder.timeout_unconfirmed()


def request_failed(error: BaseException) -> None:
    """A producer request failed without a reply; the outcome label comes from the error's class."""
    recorder = _recorder
    if recorder is not None:
        recorder.request_finished(failure_outcome(error), None)


def failure_outcome(error: BaseException) -> str:
    """The :data:`PRODUCER_OUTCOMES` value for ``error`` (stable names, not class names)."""
    if isinstance(error, RemoteError):
        return "error"
    if isinstance(error, RequestTimeout):
        return "timeout"
    if isinstance(error, Rejected):
        return "rejected"
    if isinstance(error, UnroutableError):
        return "unroutable"
    if isinstance(error, PublishError):
        return "refused"
    if isinstance(error, BrokerUnavailable):
        return "unavailable"
    return "failed"


def dead_lettered(reason: str) -> None:
    """The consumer dead-lettered a request; ``reason`` is a reject code (``protocol.REJECT_*``)."""
    recorder = _recorder
    if recorder is not None:
        recorder.dead_lettered(reason)


def dead_letter_notice(reason: str) -> None:
    """The dead-letter watcher told a caller that the broker dead-lettered its request."""
    recorder = _recorder
    if recorder is not None:
        recorder.dead_letter_notice(reason)


def reconnected() -> None:
    """The broker connection came back after a loss."""
    recorder = _recorder
    if recorder is not None:
        recorder.reconnected()


def broker_node(connection: str, node: str) -> None:
    """``connection`` is now ready on broker ``node`` (``host:port``)."""
    recorder = _recorder
    if recorder is not None:
        recorder.broker_node(connection, node)


def broker_failover(connection: str) -> None:
    """``connection`` came back on another broker node than the one it lost."""
    recorder = _recorder
    if recorder is not None:
        recorder.broker_failover(connection)


__all__ = [
    "CONSUMER_OUTCOMES",
    "PRODUCER_OUTCOMES",
    "Recorder",
    "broker_failover",
    "broker_node",
    "dead_letter_notice",
    "dead_lettered",
    "failure_outcome",
    "handler_finished",
    "install",
    "reconnected",
    "reply_received",
    "request_failed",
    "request_received",
    "request_sent",
    "timeout_unconfirmed",
]
