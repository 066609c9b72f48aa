"""The broker password never shows in reprs or logs, even at DEBUG."""

from __future__ import annotations

import logging
import uuid

import pytest

from burrow.config import RabbitMQConfig


def test_password_absent_from_repr_and_str():
    config = RabbitMQConfig(password="hunter2-very-secret")
    assert "hunter2-very-secret" not in repr(config)
    assert "hunter2-very-secret" not in str(config)


def test_password_absent_from_logs_of_a_full_round_trip(local_broker, make_config, start_consumer, start_producer, caplog):
    secret = f"pw-{uuid.uuid4().hex}"
    user = f"u-{uuid.uuid4().hex[:8]}"
    local_broker.ctl("add_user", user, secret)
    try:
        local_broker.ctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
        caplog.set_level(logging.DEBUG)
        config = make_config(rabbitmq={"username": user, "password": secret})
        start_consumer(config)
        producer = start_producer(config)
        assert producer.call(b"hi", timeout=10) == b"Consumer processed: hi"
        bad = make_config(rabbitmq={"username": user, "password": secret + "-wrong"})
        from burrow.producer import Producer

        refused = Producer(bad).start()
        assert not refused.wait_ready(2)
        refused.stop(timeout=0)
        assert caplog.records, "expected DEBUG logs to search"
        assert secret not in caplog.text
    finally:
        local_broker.ctl("delete_user", user)
