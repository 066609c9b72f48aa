"""Small broker-side helpers the integration and security tests share."""

from __future__ import annotations

from typing import Any, Callable

import pika

from burrow.config import BurrowConfig
from waiting import wait_for


def queue_depth(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> int:
    """Ready messages in ``queue`` (passive declare)."""
    return channel.queue_declare(queue=queue, passive=True).method.message_count


def start_victims_until_dead_lettered(config: BurrowConfig, consumer_process: Callable[..., Any],
                                      dead_letters: Callable[[], int], attempts: int = 6) -> None:
    """Start consumer daemons one after another, each once the poison request killed the one before,
    until the broker dead-letters the poison (at most ``attempts`` consumers, 60 s each)."""
    for attempt in range(attempts):
        if dead_letters() == 1:
            return
        victim = consumer_process(config, f"victim{attempt}").start()
        wait_for(lambda: victim.process.poll() is not None or dead_letters() == 1, 60, "the poison to kill a consumer")
