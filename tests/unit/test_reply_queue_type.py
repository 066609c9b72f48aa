"""``topology.reply_queue_type = "auto"``: which reply queue a producer declares for its broker nodes."""

from __future__ import annotations

import pytest

from burrow.config import parse_config
from burrow.topology import reply_queue_arguments, reply_queue_name, resolved_reply_queue_type, with_reply_queue_type


@pytest.mark.parametrize(("rabbitmq", "expected", "suffix"), [
    ({}, "classic", ""),
    ({"hosts": ["b1"]}, "classic", ""),
    ({"hosts": ["b1", "b2", "b3"]}, "quorum", ".quorum"),
])
def test_auto_is_quorum_only_with_more_than_one_node(rabbitmq, expected, suffix) -> None:
    config = parse_config({"rabbitmq": rabbitmq, "topology": {"reply_queue_type": "auto"}})
    assert resolved_reply_queue_type(config.topology, config.rabbitmq) == expected
    topology = with_reply_queue_type(config.topology, config.rabbitmq)
    assert reply_queue_arguments(topology)["x-queue-type"] == expected
    assert reply_queue_name(config.topology, "p1", config.rabbitmq) == f"burrow.replies.p1{suffix}"


def test_an_explicit_type_wins_over_the_node_count() -> None:
    config = parse_config({"rabbitmq": {"hosts": ["b1", "b2"]}, "topology": {"reply_queue_type": "classic"}})
    assert resolved_reply_queue_type(config.topology, config.rabbitmq) == "classic"
    assert reply_queue_name(config.topology, "p1") == "burrow.replies.p1"


def test_auto_names_no_queue_without_the_nodes() -> None:
    with pytest.raises(ValueError, match="auto"):
        reply_queue_name(parse_config({"topology": {"reply_queue_type": "auto"}}).topology, "p1")
