"""Which brokers get the stale quorum leader workaround, from the properties their Connection.Start
carries (as pika hands them over: long strings as bytes)."""

from __future__ import annotations

import pytest

from burrow.amqp.brokerversion import broker_version, describe_broker, needs_stale_leader_workaround


@pytest.mark.parametrize(
    ("version", "needed"),
    [
        (b"3.10.8", True),  # Debian 12's broker: the bug of rabbitmq-server pull request 9241
        (b"3.12.14", True),  # backports reached late 3.12 patches only: kept on, harmless there
        (b"3.13.0", False),
        (b"4.0.5", False),  # Debian 13's broker
        (b"4.1.0-rc.1", False),
        ("4.0.5", False),  # a str, as another client library could pass it
    ],
)
def test_the_workaround_is_armed_before_3_13_only(version: bytes | str, needed: bool) -> None:
    assert needs_stale_leader_workaround({"product": b"RabbitMQ", "version": version}) is needed


@pytest.mark.parametrize("properties", [None, {}, {"version": b"unknown"}, {"version": 4}])
def test_an_unreadable_version_keeps_the_workaround(properties: dict[str, object] | None) -> None:
    assert broker_version(properties) is None
    assert needs_stale_leader_workaround(properties) is True


def test_the_log_names_product_and_version() -> None:
    assert describe_broker({"product": b"RabbitMQ", "version": b"4.0.5"}) == "RabbitMQ 4.0.5"
    assert describe_broker(None) == "? ?"
