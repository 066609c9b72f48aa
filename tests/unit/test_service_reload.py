"""What a SIGHUP reload compares and keeps: burrow.daemon.reload.changed_settings / with_live_settings."""

from __future__ import annotations

from burrow.config import parse_config
from burrow.daemon.reload import LIVE_SETTINGS, PRODUCER_LIVE_SETTINGS, changed_settings, with_live_settings


def test_changed_settings_names_keys_not_values() -> None:
    old = parse_config({"rabbitmq": {"password": "old-secret"}, "consumer": {"concurrency": 4}})
    new = parse_config(
        {"rabbitmq": {"password": "new-secret"}, "consumer": {"concurrency": 6, "handler": "m:f"}}
    )
    assert changed_settings(old, new) == ["rabbitmq.password", "consumer.handler", "consumer.concurrency"]
    assert changed_settings(old, old) == []


def test_only_live_settings_are_put_in_force() -> None:
    running = parse_config({"consumer": {"concurrency": 4}, "logging": {"level": "INFO"}})
    new = parse_config(
        {
            "consumer": {"concurrency": 6, "handler": "m:f"},
            "logging": {"level": "DEBUG"},
            "producer": {"request_timeout": 5.0, "socket": "/tmp/other.sock"},
        }
    )
    applied = with_live_settings(running, new)
    assert applied.consumer.concurrency == 6
    assert applied.logging.level == "DEBUG"
    assert applied.producer.request_timeout == 5.0
    # Restart-only keys keep their running values, so the next reload still reports them.
    assert applied.consumer.handler == running.consumer.handler
    assert applied.producer.socket == running.producer.socket
    assert changed_settings(applied, new) == ["producer.socket", "consumer.handler"]
    assert not set(changed_settings(applied, new)) & LIVE_SETTINGS


def test_the_producer_takes_a_new_host_list_live_and_the_consumer_does_not() -> None:
    running = parse_config({"rabbitmq": {"host": "b1", "port": 5673}})
    new = parse_config({"rabbitmq": {"hosts": ["b1", "b2", "b3"], "port": 5674}})
    moved = with_live_settings(running, new, PRODUCER_LIVE_SETTINGS)
    assert [str(node) for node in moved.rabbitmq.nodes()] == ["b1:5673", "b2:5673", "b3:5673"]
    assert changed_settings(moved, new) == ["rabbitmq.port"]
    assert with_live_settings(running, new).rabbitmq == running.rabbitmq
