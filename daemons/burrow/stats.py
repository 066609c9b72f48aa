"""The engines' counters since start, as :meth:`Producer.stats` and :meth:`Consumer.stats` return them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ProducerStats:
    """Requests by outcome, replies that matched no waiting request, and publishes the broker has
    not confirmed yet (``awaiting_confirm``, a gauge: timed-out requests stay in it until their late
    confirm or the channel's end)."""

    submitted: int = 0
    published: int = 0
    republished: int = 0
    awaiting_confirm: int = 0
    answered: int = 0
    remote_errors: int = 0
    rejected: int = 0
    timeouts: int = 0
    unconfirmed_timeouts: int = 0  # of ``timeouts``: the broker had not confirmed the publish by the deadline
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
