"""The stale quorum leader workaround follows the version the test broker reports on connect."""

from __future__ import annotations

from burrow.amqp.brokerversion import FIXED_IN


def test_the_consumer_logs_the_brokers_version_and_whether_the_workaround_is_on(
    make_config, consumer_process, amqp
) -> None:
    version = str(amqp.connection._impl.server_properties["version"])
    consumer = consumer_process(make_config()).start()
    consumer.wait_ready()
    expected = "on" if tuple(int(part) for part in version.split(".")[:2]) < FIXED_IN else "off"
    assert f"(RabbitMQ {version}, stale quorum leader workaround {expected})" in consumer.log(), consumer.log()
