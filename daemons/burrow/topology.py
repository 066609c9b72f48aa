"""The exchanges and queues burrow needs, declared idempotently by both sides.

Requests go to a direct exchange bound to one durable request queue (quorum by default) that
dead-letters, at least once, through a fanout exchange after ``delivery_limit`` deliveries or on
rejection: to the dead-letter queue, where dead letters stay for operators (``burrow dead``), and
to the notice queue, from which the consumers' dead-letter watcher tells each caller why its
request will never be answered. Replies go through a direct exchange to per-producer durable reply queues that the
broker deletes after ``reply_queue_expires`` seconds without a consumer. Exchange and queue names
differ so that broker permissions (regexes over names) can tell them apart.

Reply queues are quorum queues on a cluster and classic queues on one broker by default
(``topology.reply_queue_type = "auto"``, see :func:`resolved_reply_queue_type`): on a cluster,
replies on their way to a producer survive the loss of any one node (a classic queue lives on one
node, and while that node is down its replies are unreachable and the producer cannot even
redeclare its queue elsewhere); on one broker a quorum queue replicates nothing and only adds
latency. Both types have single active consumer, and the producer's consume is not exclusive: a
second producer with the same ``instance_id``, or the producer's new connection while the broker
still holds its old one (blocked by a memory alarm, or cut off until heartbeats notice), registers
as a standby instead of being refused, and becomes the active consumer once the old one is gone;
replies the broker had sent to the old connection and that were never acked go back to the queue
and on to it. RabbitMQ refuses to redeclare a queue with other arguments (PRECONDITION_FAILED), so
the name says what the queue is, ``<prefix>.<id>.classic`` or ``<prefix>.<id>.quorum``; earlier
releases declared ``<prefix>.<id>`` as a classic queue without single active consumer. A producer
drains every other queue its instance may have replied on (:func:`reply_queue_names`) before it
lets it go (:mod:`burrow.amqp.replydrain`): the other type's after its host list changed the type,
and an earlier release's after an upgrade.

Each named service (:mod:`burrow.services`) has a request queue of its own, declared by the
consumers that serve it (a producer declares none: a service nobody ever served has no queue, so
its requests come back unroutable and the caller hears so at once). On a cluster a quorum service
queue asks the broker to put its leader on the node with the fewest leaders
(``x-queue-leader-locator``, :func:`leader_locator`), so that several services spread their
leaders, and with them the work, over the nodes. The broker refuses to redeclare a queue with
another leader locator (PRECONDITION_FAILED, closing the channel), and the value it takes changed
with RabbitMQ 4.0; so a service queue that exists is used as it is, whatever it was declared with
(:func:`declare_service_queues` asks first, on a channel of its own), and the default queue keeps
the arguments earlier releases declared it with.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Mapping

from pika.channel import Channel

from burrow.config import RabbitMQConfig, TopologyConfig
from burrow.partitions import exchange_steps, partition_binding
from burrow.services import DEFAULT_SERVICE, queue_name, routing_key

logger = logging.getLogger(__name__)

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


def resolved_reply_queue_type(topology: TopologyConfig, rabbitmq: RabbitMQConfig) -> str:
    """``topology.reply_queue_type``, with "auto" made "quorum" when ``rabbitmq`` names more than one
    node and "classic" with one (module docstring)."""
    if topology.reply_queue_type != "auto":
        return topology.reply_queue_type
    return "quorum" if len(rabbitmq.nodes()) > 1 else "classic"


def with_reply_queue_type(topology: TopologyConfig, rabbitmq: RabbitMQConfig) -> TopologyConfig:
    """``topology`` with its reply queue type resolved for ``rabbitmq``: what the producer declares."""
    return dataclasses.replace(topology, reply_queue_type=resolved_reply_queue_type(topology, rabbitmq))


def reply_queue_name(topology: TopologyConfig, instance_id: str, rabbitmq: RabbitMQConfig | None = None) -> str:
    """The durable reply queue of the producer instance ``instance_id``: ``<prefix>.<id>.<type>``
    (module docstring).

    An "auto" type is resolved for ``rabbitmq``'s nodes, so it needs ``rabbitmq``.
    """
    queue_type = topology.reply_queue_type
    if queue_type == "auto":
        if rabbitmq is None:
            raise ValueError('topology.reply_queue_type "auto" names no queue without the rabbitmq nodes')
        queue_type = resolved_reply_queue_type(topology, rabbitmq)
    return f"{topology.reply_queue_prefix}.{instance_id}.{queue_type}"


def reply_queue_names(topology: TopologyConfig, instance_id: str) -> list[str]:
    """Every reply queue the producer instance ``instance_id`` may have used: the classic one of
    earlier releases (``<prefix>.<id>``, consumed exclusively), then the classic and the quorum one."""
    base = f"{topology.reply_queue_prefix}.{instance_id}"
    return [base, f"{base}.classic", f"{base}.quorum"]


def reply_queue_arguments(topology: TopologyConfig) -> dict[str, Any]:
    """Arguments of a reply queue: its type, its expiry and single active consumer (module docstring)."""
    return {
        "x-queue-type": topology.reply_queue_type,
        "x-expires": topology.reply_queue_expires * 1000,
        "x-single-active-consumer": True,
    }


def request_queue_arguments(topology: TopologyConfig) -> dict[str, Any]:
    """Arguments of the request queue; quorum queues get a delivery limit and at-least-once DLX."""
    arguments: dict[str, Any] = {
        "x-queue-type": topology.queue_type,
        "x-dead-letter-exchange": topology.dead_letter_exchange,
    }
    if topology.queue_type == "quorum":
        arguments["x-delivery-limit"] = topology.delivery_limit
        # At-least-once dead-lettering needs reject-publish overflow: a full queue nacks the
        # publisher instead of dropping its oldest messages.
        arguments["x-dead-letter-strategy"] = "at-least-once"
        arguments["x-overflow"] = "reject-publish"
    return arguments


#: Notices kept for the dead-letter watcher while none runs; the oldest go first beyond this.
NOTICE_QUEUE_MAX_LENGTH = 10000


def notice_queue_arguments(topology: TopologyConfig) -> dict[str, Any]:
    """Arguments of the notice queue: bounded, dropping its oldest notices rather than refusing new
    ones, because at-least-once dead-lettering waits for every target queue to take a dead letter
    and a full notice queue must never hold up the dead-letter queue itself."""
    return {"x-queue-type": topology.queue_type, "x-max-length": NOTICE_QUEUE_MAX_LENGTH, "x-overflow": "drop-head"}


def leader_locator(server_properties: dict[str, Any]) -> str:
    """The ``x-queue-leader-locator`` value that spreads quorum queue leaders on the broker that
    sent ``server_properties`` (connection.start): RabbitMQ 3.x takes ``client-local``, ``random``
    and ``least-leaders`` (3.12 and 3.13 read the last as ``balanced``); 4.0 takes ``client-local``
    and ``balanced`` and refuses the others as deprecated. An unreadable version counts as 3.x."""
    version = server_properties.get("version", b"")
    text = version.decode("ascii", "replace") if isinstance(version, bytes) else str(version)
    major = text.split(".", 1)[0]
    return "balanced" if major.isdigit() and int(major) >= 4 else "least-leaders"


def service_queue_steps(topology: TopologyConfig, service: str, locator: str | None) -> list[tuple[str, dict[str, Any]]]:
    """Declare and bind the request queue of ``service`` (the default one: ``request_queue``);
    a named quorum queue gets ``locator`` as its leader locator when one is given."""
    queue = queue_name(topology.request_queue, service)
    arguments = request_queue_arguments(topology)
    if queue != topology.request_queue and topology.queue_type == "quorum" and locator:
        arguments["x-queue-leader-locator"] = locator
    return [
        ("queue_declare", {"queue": queue, "durable": True, "arguments": arguments}),
        ("queue_bind", {"queue": queue, "exchange": topology.request_exchange,
                        "routing_key": routing_key(topology.request_queue, service)}),
    ]


def declaration_steps(topology: TopologyConfig, reply_queue: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The ordered ``(channel method, keyword arguments)`` calls that declare the topology: the
    exchanges, the dead-letter queues, the default request queue and the ``reply_queue``."""
    steps: list[tuple[str, dict[str, Any]]] = [
        ("exchange_declare", {"exchange": topology.request_exchange, "exchange_type": "direct", "durable": True}),
        ("exchange_declare", {"exchange": topology.reply_exchange, "exchange_type": "direct", "durable": True}),
        ("exchange_declare", {"exchange": topology.dead_letter_exchange, "exchange_type": "fanout", "durable": True}),
        (
            "queue_declare",
            {
                "queue": topology.dead_letter_queue,
                "durable": True,
                "arguments": {"x-queue-type": topology.queue_type},
            },
        ),
        ("queue_bind", {"queue": topology.dead_letter_queue, "exchange": topology.dead_letter_exchange, "routing_key": ""}),
        (
            "queue_declare",
            {"queue": topology.dead_letter_notice_queue, "durable": True, "arguments": notice_queue_arguments(topology)},
        ),
        (
            "queue_bind",
            {"queue": topology.dead_letter_notice_queue, "exchange": topology.dead_letter_exchange, "routing_key": ""},
        ),
        *service_queue_steps(topology, DEFAULT_SERVICE, None),
    ]
    if reply_queue is not None:
        steps += [
            (
                "queue_declare",
                {
                    "queue": reply_queue,
                    "durable": True,
                    "arguments": reply_queue_arguments(topology),
                },
            ),
            ("queue_bind", {"queue": reply_queue, "exchange": topology.reply_exchange, "routing_key": reply_queue}),
        ]
    return steps


def declare_topology(
    channel: Channel, topology: TopologyConfig, reply_queue: str | None, on_done: Callable[[], None],
    services: tuple[str, ...] = (), partitions: Mapping[str, int] | None = None,
) -> None:
    """Run the declaration steps one after another on ``channel``, then ensure the named
    ``services``' queues (:func:`declare_service_queues`; ``partitions`` maps a split service to
    its number of queues), then call ``on_done``.

    A declaration the broker refuses (e.g. a queue that exists with other arguments) closes the
    channel; the channel's close callback reports the broker's reason and the connection retries.
    """
    steps = declaration_steps(topology, reply_queue)
    named = [service for service in services if service != DEFAULT_SERVICE]

    def run(index: int) -> None:
        if index == len(steps):
            logger.debug("Topology declared on channel %s", channel.channel_number)
            declare_service_queues(channel, topology, named, on_done, partitions or {})
            return
        method, kwargs = steps[index]
        getattr(channel, method)(callback=lambda _frame: run(index + 1), **kwargs)

    run(0)


#: One step of :func:`service_plan`: a channel method and its arguments, or a queue to make sure
#: of (``"queue"``, its declaration's and its binding's arguments).
PlanStep = tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], dict[str, Any]]


def service_plan(topology: TopologyConfig, services: list[str], locator: str,
                 partitions: Mapping[str, int]) -> list[PlanStep]:
    """What makes the named ``services`` routable, in order: each service's queue, or for a service
    split over several queues (:mod:`burrow.partitions`) its consistent-hash exchange, its
    partition queues bound to it, then its binding to the request exchange."""
    plan: list[PlanStep] = []
    for service in services:
        count = partitions.get(service, 1)
        if count <= 1:
            (declare, bind) = service_queue_steps(topology, service, locator)
            plan.append(("queue", declare[1], bind[1]))
            continue
        (exchange, binding) = exchange_steps(topology, service)
        plan.append(exchange)
        arguments = request_queue_arguments(topology)
        if topology.queue_type == "quorum":
            arguments["x-queue-leader-locator"] = locator
        for index in range(count):
            binding_arguments = partition_binding(topology, service, index)
            plan.append(("queue", {"queue": binding_arguments["queue"], "durable": True, "arguments": arguments},
                         binding_arguments))
        plan.append(binding)
    return plan


def declare_service_queues(channel: Channel, topology: TopologyConfig, services: list[str],
                           on_done: Callable[[], None], partitions: Mapping[str, int] | None = None) -> None:
    """Make sure each named service has its queues and bindings (:func:`service_plan`), then call
    ``on_done``.

    For each queue a passive declare on a short-lived probe channel asks whether the queue
    exists; a missing queue closes only the probe channel (404), and the queue is then declared on
    ``channel`` with the leader locator for this broker's version (:func:`leader_locator`). A queue
    that exists is only bound again: its arguments stay as they were declared (module docstring).
    """
    locator = leader_locator(getattr(channel.connection, "server_properties", None) or {})
    plan = service_plan(topology, services, locator, partitions or {})

    def ensure(index: int) -> None:
        if index == len(plan):
            on_done()
            return
        step = plan[index]
        if len(step) == 2:
            method, kwargs = step
            getattr(channel, method)(callback=lambda _frame: ensure(index + 1), **kwargs)
            return
        (_kind, declare, bind) = step  # type: ignore[misc]
        queue = declare["queue"]

        def bound() -> None:
            channel.queue_bind(callback=lambda _frame: ensure(index + 1), **bind)

        def on_probe_open(probe: Channel) -> None:
            found = False

            def exists(_frame: Any) -> None:
                nonlocal found
                found = True
                probe.close()
                bound()

            def closed(_probe: Channel, reason: BaseException) -> None:
                if found or not channel.is_open:
                    return  # done, or the connection is gone and the owner reconnects
                logger.info("Declaring the request queue %s (leader locator %s): %s", queue, locator, reason)
                channel.queue_declare(callback=lambda _frame: bound(), **declare)

            probe.add_on_close_callback(closed)
            probe.queue_declare(queue=queue, passive=True, callback=exists)

        channel.connection.channel(on_open_callback=on_probe_open)

    ensure(0)
