"""``QueueStats``: how many requests wait in each service's queue, and how many consumers serve it.

The consumer asks the broker every few seconds with passive declares on a short-lived channel of
its own (a queue that has gone missing closes only that channel, never the one requests arrive
on); the answers feed the daemon's ``STATUS=`` line and its metrics, so ``burrow status`` and
``systemctl status`` show each service's backlog without broker credentials of their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pika
from pika.channel import Channel

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QueueCount:
    """One service's queue as the broker last reported it: ``ready`` requests waiting for a
    consumer (not those delivered and unacked) and the ``consumers`` registered on it."""

    queue: str
    ready: int
    consumers: int


class QueueStats:
    """The latest :class:`QueueCount` of each named queue; :meth:`poll` runs on the I/O thread."""

    def __init__(self, queues: dict[str, str]) -> None:
        self._queues = dict(queues)  # service name -> queue name
        self.latest: dict[str, QueueCount] = {}  # replaced whole, so other threads read it safely

    def poll(self, connection: pika.SelectConnection) -> None:
        """Ask about every queue on a new channel of ``connection``; keep the answers once all came."""
        if connection.is_open:
            connection.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, channel: Channel) -> None:
        pending = list(self._queues.items())
        answers: dict[str, QueueCount] = {}

        def ask(index: int) -> None:
            if index == len(pending):
                self.latest = answers
                channel.close()
                return
            name, queue = pending[index]

            def answered(frame: Any) -> None:
                answers[name] = QueueCount(queue, frame.method.message_count, frame.method.consumer_count)
                ask(index + 1)

            channel.queue_declare(queue=queue, passive=True, callback=answered)

        ask(0)



def describe(counts: dict[str, QueueCount]) -> str:
    """``services: resize 3 ready 2 consumers, pdf 0 ready 1 consumer`` for STATUS=, or "" before
    the broker first answered."""
    if not counts:
        return ""
    parts = [f"{name} {count.ready} ready {count.consumers} consumer{'' if count.consumers == 1 else 's'}"
             for name, count in counts.items()]
    return "services: " + ", ".join(parts)
