"""The engines' counters since start, as :meth:`Producer.stats` and :meth:`Consumer.stats` return them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ProducerStats:
    """Requests by outcome, and replies that matched no waiting request."""

    submitted: int = 0
    published: int = 0
    republished: int = 0
    answered: int = 0
    remote_errors: int = 0
    rejected: int = 0
    timeouts: int = 0
    cancelled: int = 0
    failed: int = 0
    orphaned_replies: int = 0
    duplicate_replies: int = 0


@dataclass(slots=True)
class ConsumerStats:
    """Requests received, and what became of them."""

    received: int = 0
    processed: int = 0
    handler_errors: int = 0
    dead_lettered: int = 0
    stale: int = 0
    redelivered: int = 0
