"""Small broker-side helpers the integration and security tests share."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable

import pika
import pika.exceptions

from burrow.config import BurrowConfig, TopologyConfig
from burrow.partitions import HEADER_KEY
from waiting import wait_for


def queue_depth(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> int:
    """Ready messages in ``queue`` (passive declare)."""
    return channel.queue_declare(queue=queue, passive=True).method.message_count


def queue_exists(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> bool:
    """Whether ``queue`` exists, asked by a passive declare on a channel of its own (a missing
    queue closes the channel it is asked on)."""
    probe = channel.connection.channel()
    try:
        probe.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404, exc
        return False
    probe.close()
    return True


def delete_topology(channel: pika.adapters.blocking_connection.BlockingChannel, topology: TopologyConfig,
                    queues: Iterable[str] = ()) -> None:
    """Delete a test's queues (its request, dead-letter and notice queues, and ``queues``, such as
    the reply queues it knows of) and then its exchanges, so the next test starts on a clean broker.
    Deleting what is not there is not an error in AMQP, so a test that never declared them is fine."""
    for queue in (topology.request_queue, topology.dead_letter_queue, topology.dead_letter_notice_queue, *queues):
        channel.queue_delete(queue=queue)
    for exchange in (topology.request_exchange, topology.reply_exchange, topology.dead_letter_exchange):
        channel.exchange_delete(exchange=exchange)


def reply_queue(channel: pika.adapters.blocking_connection.BlockingChannel, config: BurrowConfig, suffix: str) -> str:
    """Declare an exclusive queue bound to the reply exchange under its own name, for requests a
    test publishes by hand with it as ``reply_to``; return its name."""
    queue = f"{config.topology.reply_queue_prefix}.{suffix}"
    channel.queue_declare(queue, exclusive=True)
    channel.queue_bind(queue, config.topology.reply_exchange, routing_key=queue)
    return queue


def next_message(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str, timeout: float,
                 what: str) -> tuple[pika.BasicProperties, bytes]:
    """Take the next message from ``queue`` (acked), waiting up to ``timeout`` seconds for it."""
    got: list[tuple[pika.BasicProperties, bytes]] = []

    def arrived() -> bool:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            got.append((properties, body))
        return bool(got)

    wait_for(arrived, timeout, what)
    return got[0]


def start_victims_until_dead_lettered(config: BurrowConfig, consumer_process: Callable[..., Any],
                                      dead_letters: Callable[[], int], attempts: int = 6) -> None:
    """Start consumer daemons one after another, each once the poison request killed the one before,
    until the broker dead-letters the poison (at most ``attempts`` consumers, 60 s each)."""
    for attempt in range(attempts):
        if dead_letters() == 1:
            return
        victim = consumer_process(config, f"victim{attempt}").start()
        wait_for(lambda: victim.process.poll() is not None or dead_letters() == 1, 60, "the poison to kill a consumer")


def partition_of_each_request(channel: pika.adapters.blocking_connection.BlockingChannel,
                              queues: list[str]) -> dict[str, list[tuple[int, str]]]:
    """``{correlation id: [(partition, key header), ...]}`` read from every partition queue; the
    messages stay unacked and go back to their queues when the channel closes."""
    found: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for index, queue in enumerate(queues):
        while True:
            method, properties, _body = channel.basic_get(queue=queue, auto_ack=False)
            if method is None:
                break
            found[properties.correlation_id].append((index, (properties.headers or {}).get(HEADER_KEY)))
    return found
