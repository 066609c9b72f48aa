"""Partitions: the key header, the order of the declarations, the config rule and the consumer's queues."""

from __future__ import annotations

from pathlib import Path

import pytest

from burrow.config import ConsumerConfig, ServiceConfig, TopologyConfig, load_config
from burrow.errors import ConfigError
from burrow.partitions import HEADER_KEY, check_key, keyed_headers, partition_queues
from burrow.serving import serve
from burrow.topology import service_plan

TOPOLOGY = TopologyConfig()


def test_every_request_carries_its_key_or_else_its_correlation_id():
    assert keyed_headers({"a": 1}, "customer-7", "cid-1") == {"a": 1, HEADER_KEY: "customer-7"}
    assert keyed_headers(None, None, "cid-1") == {HEADER_KEY: "cid-1"}
    with pytest.raises(ValueError, match="1 to 255 bytes"):
        check_key("")
    with pytest.raises(ValueError, match="got 256"):
        check_key("k" * 256)
    with pytest.raises(TypeError, match="must be a str"):
        check_key(7)  # type: ignore[arg-type]


def test_the_service_is_bound_to_the_request_exchange_only_after_its_partitions():
    """Until its last step the hash exchange is unreachable, so no request is routed to an exchange
    with no queue (which the broker would drop as unroutable)."""
    plan = service_plan(TOPOLOGY, ["hot", "plain"], "least-leaders", {"hot": 3})
    assert [step[0] for step in plan] == ["exchange_declare", "queue", "queue", "queue", "exchange_bind", "queue"]
    assert plan[0][1]["exchange_type"] == "x-consistent-hash" and plan[0][1]["arguments"] == {"hash-header": HEADER_KEY}
    assert [step[1]["queue"] for step in plan[1:4]] == ["burrow.requests.hot.0", "burrow.requests.hot.1",
                                                         "burrow.requests.hot.2"]
    assert {step[2]["exchange"] for step in plan[1:4]} == {"burrow.x.requests.hot"}
    assert {step[2]["routing_key"] for step in plan[1:4]} == {"1"}
    assert all(step[1]["arguments"]["x-queue-leader-locator"] == "least-leaders" for step in plan[1:4])
    assert plan[4][1] == {"destination": "burrow.x.requests.hot", "source": "burrow.x.requests", "routing_key": "hot"}
    assert plan[5][2] == {"queue": "burrow.requests.plain", "exchange": "burrow.x.requests", "routing_key": "plain"}


def test_partitions_are_bounded_and_the_default_service_stays_one_queue(tmp_path: Path):
    path = tmp_path / "consumer.toml"
    path.write_text('[consumer.services.hot]\nhandler = "burrow.handlers:echo"\npartitions = 65\n')
    with pytest.raises(ConfigError, match=r"consumer\.services\.hot\.partitions: must be between 1 and 64, got 65"):
        load_config(path)
    path.write_text('[consumer.services.default]\nhandler = "burrow.handlers:echo"\npartitions = 2\n')
    with pytest.raises(ConfigError, match=r"consumer\.services: default\.partitions must be 1"):
        load_config(path)
    path.write_text('[consumer.services.hot]\nhandler = "burrow.handlers:echo"\npartitions = 4\n')
    assert load_config(path).consumer.services["hot"].partitions == 4


def test_a_consumer_consumes_every_partition_with_one_pool_per_service():
    settings = ConsumerConfig(services={"hot": ServiceConfig(handler="burrow.handlers:echo", partitions=3),
                                       "cold": ServiceConfig(handler="burrow.handlers:echo")})
    served = serve(TOPOLOGY, settings, tuple(settings.services.items()),
                   {"hot": lambda body: body, "cold": lambda body: body}, lambda _job: None)
    try:
        assert [service.queue for service in served] == [*partition_queues(TOPOLOGY, "hot", 3), "burrow.requests.cold"]
        assert len({id(service.window) for service in served}) == 4
        assert len({id(service.workers) for service in served if service.name == "hot"}) == 1
        assert served[0].workers is not served[3].workers
    finally:
        for service in served:
            service.workers.shutdown()
