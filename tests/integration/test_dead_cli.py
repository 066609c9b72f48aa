"""``burrow dead list|show|replay|purge`` against a real broker's dead-letter queue."""

from __future__ import annotations

import dataclasses
import re
import uuid

import pytest

import burrow_test_handlers
from burrow.config import BurrowConfig
from burrow.errors import Rejected

from broker_helpers import queue_depth
from processes import burrow, write_config
from waiting import wait_for


def dead_letter_three(config: BurrowConfig, start_consumer, start_producer, amqp,
                      service: str | None = None) -> tuple[list[str], list[bytes]]:
    """Three requests (to ``service``) too large for a picky consumer: dead-lettered, their ids
    and bodies returned."""
    picky = start_consumer(dataclasses.replace(config, consumer=dataclasses.replace(config.consumer, max_message_bytes=16)))
    producer = start_producer(config)
    bodies = [f"too-large-request-{i}".encode() for i in range(3)]
    futures = [producer.submit(body, timeout=30, service=service) for body in bodies]
    for future in futures:
        with pytest.raises(Rejected):
            future.result(timeout=30)
    wait_for(lambda: queue_depth(amqp, config.topology.dead_letter_queue) == 3, 10, "three dead letters")
    picky.stop(timeout=10)
    return [future.correlation_id for future in futures], bodies


def test_list_and_show_read_without_taking(make_config, start_consumer, start_producer, amqp, tmp_path):
    config = make_config()
    ids, bodies = dead_letter_three(config, start_consumer, start_producer, amqp)
    path = tmp_path / "operator.toml"
    write_config(config, path)

    listing = burrow("dead", "list", "--config", str(path))
    assert listing.returncode == 0, listing.stderr
    rows = listing.stdout.splitlines()[1:]
    assert len(rows) == 3, listing.stdout
    for row, correlation_id, body in zip(rows, ids, bodies):
        assert re.match(rf"\s*\d+s\s+rejected\s+default\s+{re.escape(correlation_id)}\s+{len(body)}\s+-\s+1\s+"
                        rf"{re.escape(body.decode())}$", row), row
    assert len(burrow("dead", "list", "--config", str(path), "--limit", "2").stdout.splitlines()) == 3

    shown = burrow("dead", "show", ids[1], "--config", str(path))
    assert shown.returncode == 0, shown.stderr
    assert f"correlation_id: {ids[1]}" in shown.stdout and "service:        default" in shown.stdout
    assert "x-death:" in shown.stdout and "reason=rejected" in shown.stdout
    assert bodies[1].decode() in shown.stdout
    assert burrow("dead", "show", "no-such-id", "--config", str(path)).returncode == 1
    assert queue_depth(amqp, config.topology.dead_letter_queue) == 3, "reading must not take dead letters"


def test_replay_publishes_again_then_removes(make_config, start_consumer, start_producer, amqp, tmp_path):
    config = make_config(consumer={"handler": "burrow_test_handlers:record"})
    ids, bodies = dead_letter_three(config, start_consumer, start_producer, amqp)
    path = tmp_path / "operator.toml"
    write_config(config, path)
    start_consumer(config)
    seen_before = len(burrow_test_handlers.SEEN)

    replay = burrow("dead", "replay", ids[0], "--config", str(path))
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.splitlines() == [f"replayed {ids[0]}"]
    wait_for(lambda: bodies[0] in burrow_test_handlers.SEEN[seen_before:], 10, "the replayed request handled")
    assert queue_depth(amqp, config.topology.dead_letter_queue) == 2

    everything = burrow("dead", "replay", "--all", "--reason", "rejected", "--config", str(path))
    assert everything.returncode == 0, everything.stderr
    assert sorted(everything.stdout.splitlines()) == sorted(f"replayed {i}" for i in ids[1:])
    wait_for(lambda: set(bodies) <= set(burrow_test_handlers.SEEN[seen_before:]), 10, "every replay handled")
    assert queue_depth(amqp, config.topology.dead_letter_queue) == 0
    assert burrow("dead", "replay", "--config", str(path)).returncode == 2, "neither an id nor --all"


def test_purge_removes_only_older_ones_and_asks_first(make_config, start_consumer, start_producer, amqp, tmp_path):
    config = make_config()
    dead_letter_three(config, start_consumer, start_producer, amqp)
    path = tmp_path / "operator.toml"
    write_config(config, path)
    depth = lambda: queue_depth(amqp, config.topology.dead_letter_queue)  # noqa: E731

    young = burrow("dead", "purge", "--older-than", "1h", "--yes", "--config", str(path))
    assert young.returncode == 0 and "no dead letters older than 1h" in young.stderr, young.stderr
    assert depth() == 3
    unasked = burrow("dead", "purge", "--older-than", "0s", "--config", str(path))
    assert unasked.returncode == 1 and "--yes" in unasked.stderr
    assert depth() == 3
    bad = burrow("dead", "purge", "--older-than", "soon", "--yes", "--config", str(path))
    assert bad.returncode == 2 and "not a duration" in bad.stderr
    purged = burrow("dead", "purge", "--older-than", "0s", "--yes", "--config", str(path))
    assert purged.returncode == 0 and "purged 3 dead letter(s)" in purged.stderr, purged.stderr
    assert depth() == 0


def test_operator_user_needs_only_read_on_the_dead_queue_and_write_on_the_request_exchange(
        make_config, start_consumer, start_producer, amqp, local_broker, tmp_path):
    config = make_config()
    ids, _ = dead_letter_three(config, start_consumer, start_producer, amqp)
    topology = config.topology
    name, password = f"operator-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    local_broker.ctl("add_user", name, password)
    try:
        local_broker.ctl("set_permissions", "-p", config.rabbitmq.virtual_host, name, "^$",
                         f"^{re.escape(topology.request_exchange)}$", f"^{re.escape(topology.dead_letter_queue)}$")
        operator = dataclasses.replace(config, rabbitmq=dataclasses.replace(config.rabbitmq, username=name, password=password))
        path = tmp_path / "operator.toml"
        write_config(operator, path)
        assert burrow("dead", "list", "--config", str(path)).returncode == 0
        start_consumer(config)
        replay = burrow("dead", "replay", ids[0], "--config", str(path))
        assert replay.returncode == 0, replay.stderr
        local_broker.ctl("set_permissions", "-p", config.rabbitmq.virtual_host, name, "^$", "^$",
                         f"^{re.escape(topology.dead_letter_queue)}$")
        refused = burrow("dead", "replay", ids[1], "--config", str(path))
        assert refused.returncode == 1 and "403" in refused.stderr, refused.stderr
        assert queue_depth(amqp, topology.dead_letter_queue) == 2, "a refused replay keeps its dead letter"
    finally:
        local_broker.ctl("delete_user", name)


def test_dead_letters_say_their_service_and_replay_goes_back_to_it(make_config, start_consumer, start_producer, amqp,
                                                                    tmp_path):
    config = make_config(services={"default": "burrow.handlers:echo", "rec": "burrow_test_handlers:record"})
    ids, bodies = dead_letter_three(config, start_consumer, start_producer, amqp, service="rec")
    path = tmp_path / "operator.toml"
    write_config(config, path)
    rows = burrow("dead", "list", "--config", str(path), "--service", "rec").stdout.splitlines()[1:]
    assert [row.split()[2] for row in rows] == ["rec"] * 3, rows
    assert burrow("dead", "list", "--config", str(path), "--service", "default").stdout.splitlines()[1:] == []
    start_consumer(config)
    seen_before = len(burrow_test_handlers.SEEN)
    replay = burrow("dead", "replay", "--all", "--service", "rec", "--config", str(path))
    assert replay.returncode == 0, replay.stderr
    # Only the rec service's handler records bodies: the replays reached that service's queue.
    wait_for(lambda: set(bodies) <= set(burrow_test_handlers.SEEN[seen_before:]), 10, "every replay handled by rec")
    assert queue_depth(amqp, config.topology.dead_letter_queue) == 0
