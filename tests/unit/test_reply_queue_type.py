"""``topology.reply_queue_type = "auto"``, the default: which reply queue a producer declares for its broker nodes."""

from __future__ import annotations

import pytest

from burrow.config import parse_config
from burrow.topology import (
    declaration_steps,
    reply_queue_arguments,
    reply_queue_name,
    reply_queue_names,
    resolved_reply_queue_type,
    with_reply_queue_type,
)


@pytest.mark.parametrize(("rabbitmq", "expected"), [
    ({}, "classic"),
    ({"hosts": ["b1"]}, "classic"),
    ({"hosts": ["b1", "b2", "b3"]}, "quorum"),
])
def test_auto_is_the_default_and_quorum_only_with_more_than_one_node(rabbitmq, expected) -> None:
    config = parse_config({"rabbitmq": rabbitmq})
    assert config.topology.reply_queue_type == "auto"
    assert resolved_reply_queue_type(config.topology, config.rabbitmq) == expected
    topology = with_reply_queue_type(config.topology, config.rabbitmq)
    assert reply_queue_arguments(topology)["x-queue-type"] == expected
    assert reply_queue_name(config.topology, "p1", config.rabbitmq) == f"burrow.replies.p1.{expected}"


def test_an_explicit_type_wins_over_the_node_count() -> None:
    config = parse_config({"rabbitmq": {"hosts": ["b1", "b2"]}, "topology": {"reply_queue_type": "classic"}})
    assert resolved_reply_queue_type(config.topology, config.rabbitmq) == "classic"
    assert reply_queue_name(config.topology, "p1") == "burrow.replies.p1.classic"


def test_auto_names_no_queue_without_the_nodes() -> None:
    with pytest.raises(ValueError, match="auto"):
        reply_queue_name(parse_config({}).topology, "p1")


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_either_type_is_declared_with_single_active_consumer(queue_type) -> None:
    """A consume beside a connection the broker still holds must wait as a standby, not be refused:
    single active consumer on the queue (and no exclusive consume, see the producer)."""
    topology = parse_config({"topology": {"reply_queue_type": queue_type}}).topology
    name = reply_queue_name(topology, "p1")
    (declare,) = [kwargs for method, kwargs in declaration_steps(topology, name)
                  if method == "queue_declare" and kwargs["queue"] == name]
    assert declare["durable"] and not declare.get("exclusive")
    assert declare["arguments"] == {"x-queue-type": queue_type, "x-expires": 3600 * 1000, "x-single-active-consumer": True}


def test_the_queues_an_instance_may_have_used_include_the_name_of_earlier_releases() -> None:
    """Earlier releases declared "<prefix>.<id>" as a classic queue without single active consumer;
    the broker refuses to redeclare it with that argument, so today's classic queue has its own
    name and the old one is among those drained."""
    topology = parse_config({}).topology
    names = reply_queue_names(topology, "p1")
    assert names == ["burrow.replies.p1", "burrow.replies.p1.classic", "burrow.replies.p1.quorum"]
    for queue_type in ("classic", "quorum"):
        assert reply_queue_name(parse_config({"topology": {"reply_queue_type": queue_type}}).topology, "p1") in names
    assert len(set(names)) == 3
