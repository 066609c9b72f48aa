"""Partitions: one named service split over N queues by the broker's consistent-hash exchange.

A quorum queue is served by its leader's one Erlang process, so one queue caps one service's
throughput at what one core of one node can do. A service with ``partitions = N``
(``[consumer.services.<name>]``) has N request queues, ``<request_queue>.<name>.<i>`` for i in
0..N-1, each with its own leader (spread by the leader locator like the service queues), and every
consumer of the service consumes all N, each with its own request window.

The routing is the broker's own, from the ``rabbitmq_consistent_hash_exchange`` plugin that ships
with RabbitMQ: the request exchange binds the routing key ``<name>`` to the service's
``x-consistent-hash`` exchange ``<request_exchange>.<name>`` (an exchange-to-exchange binding),
which binds each partition queue with weight 1 and picks one of them per message by hashing the
request's :data:`HEADER_KEY` header. So a producer publishes to a partitioned service exactly as to
any other (routing key ``<name>``, ``mandatory``, confirms): it never learns N, and N can change
with no producer change and no producer restart. Every request goes to exactly one partition (the
exchange picks one bucket), a request with a key to the same partition as every other request
with that key, so requests with one key are handled in the order they were published (with one
consumer and ``concurrency = 1`` for strict order), while requests without a key carry their
correlation id there and spread evenly.

The exchange is durable with its bindings; only the consumers of the service declare it, so until
one has, the request exchange routes ``<name>`` nowhere and the producer's caller hears
:class:`~burrow.errors.UnknownService` at once, as for any service nobody serves.
"""

from __future__ import annotations

import argparse
from typing import Any

from burrow import protocol
from burrow.config import TopologyConfig
from burrow.services import queue_name

#: The request header the service's consistent-hash exchange hashes (:data:`burrow.protocol.HEADER_KEY`):
#: the caller's key, or the request's correlation id when it gave none. Every burrow producer sets
#: it on every request.
HEADER_KEY = protocol.HEADER_KEY
#: The exchange type of the ``rabbitmq_consistent_hash_exchange`` plugin.
EXCHANGE_TYPE = "x-consistent-hash"
#: Each partition's binding weight: equal weights give each partition an equal share of the ring.
WEIGHT = "1"
#: The longest key: it travels as an AMQP header value, and a short one hashes as well as a long one.
MAX_KEY_BYTES = 255


def check_key(key: str | None) -> str | None:
    """Return ``key`` if it can be a request key (or is None: no key); else raise ``ValueError``."""
    if key is None:
        return None
    if not isinstance(key, str):
        raise TypeError(f"request key must be a str, not {type(key).__name__}")
    size = len(key.encode("utf-8", "surrogatepass"))
    if not key or size > MAX_KEY_BYTES:
        raise ValueError(f"request key must be 1 to {MAX_KEY_BYTES} bytes in UTF-8, got {size}")
    return key


def key_argument(text: str) -> str:
    """argparse type of ``--key KEY``: a usable request key."""
    try:
        check_key(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def keyed_headers(headers: dict[str, Any] | None, key: str | None, correlation_id: str) -> dict[str, Any]:
    """The caller's ``headers`` plus :data:`HEADER_KEY`: ``key``, else ``correlation_id``."""
    return {**(headers or {}), HEADER_KEY: correlation_id if key is None else key}


def hash_exchange(topology: TopologyConfig, service: str) -> str:
    """The consistent-hash exchange of the partitioned ``service``."""
    return f"{topology.request_exchange}.{service}"


def partition_queue(topology: TopologyConfig, service: str, index: int) -> str:
    """The request queue of partition ``index`` (from 0) of ``service``."""
    return f"{queue_name(topology.request_queue, service)}.{index}"


def partition_queues(topology: TopologyConfig, service: str, partitions: int) -> list[str]:
    """Every request queue of ``service`` split over ``partitions`` queues (1: its one queue)."""
    if partitions <= 1:
        return [queue_name(topology.request_queue, service)]
    return [partition_queue(topology, service, index) for index in range(partitions)]


def exchange_steps(topology: TopologyConfig, service: str) -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]:
    """Declare the service's consistent-hash exchange, and bind it to the request exchange under
    the service's name: the first step runs before the partition queues are bound, the second after,
    so that no request is routed to the exchange while it has no queue to route to."""
    exchange = hash_exchange(topology, service)
    return (
        ("exchange_declare", {"exchange": exchange, "exchange_type": EXCHANGE_TYPE, "durable": True,
                              "arguments": {"hash-header": HEADER_KEY}}),
        ("exchange_bind", {"destination": exchange, "source": topology.request_exchange, "routing_key": service}),
    )


def partition_binding(topology: TopologyConfig, service: str, index: int) -> dict[str, Any]:
    """``queue_bind`` arguments of partition ``index`` to the service's consistent-hash exchange."""
    return {"queue": partition_queue(topology, service, index), "exchange": hash_exchange(topology, service),
            "routing_key": WEIGHT}
