"""Service configuration: ``[consumer.services.<name>]`` tables, names, queues and routing keys."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pika
import pytest

from burrow.config import ConsumerConfig, ServiceConfig, TopologyConfig, load_config, parse_config, to_toml
from burrow.errors import ConfigError
from burrow.protocol import validate_request
from burrow.services import DEFAULT_SERVICE, check_name, queue_name, routing_key, served
from burrow.tools.status import consumer_unit
from burrow.topology import declaration_steps, leader_locator, service_queue_steps


def load(tmp_path: Path, text: str):
    path = tmp_path / "consumer.toml"
    path.write_text(text)
    return load_config(path)


def test_a_file_of_an_earlier_release_serves_the_default_service_on_the_old_queue(tmp_path):
    config = load(tmp_path, '[consumer]\nhandler = "burrow.handlers:echo"\nconcurrency = 3\n')
    assert config.consumer.services == {}
    assert served(config.consumer) == ((DEFAULT_SERVICE, ServiceConfig(handler="burrow.handlers:echo")),)
    assert queue_name("burrow.requests", None) == queue_name("burrow.requests", DEFAULT_SERVICE) == "burrow.requests"
    assert routing_key("burrow.requests", None) == "burrow.requests"


def test_services_each_with_handler_and_limits(tmp_path):
    config = load(tmp_path, """
[consumer]
concurrency = 4
[consumer.services.resize]
handler = "images.handlers:resize"
concurrency = 8
prefetch = 2
[consumer.services.default]
handler = "docs.handlers:render"
""")
    assert served(config.consumer) == (
        ("resize", ServiceConfig(handler="images.handlers:resize", concurrency=8, prefetch=2)),
        ("default", ServiceConfig(handler="docs.handlers:render")),
    )
    assert queue_name("burrow.requests", "resize") == "burrow.requests.resize"
    assert routing_key("burrow.requests", "resize") == "resize"
    assert load(tmp_path, to_toml(config)).consumer == config.consumer


def test_services_round_trip_through_to_toml():
    config = parse_config({"consumer": {"services": {"x": {"handler": "m:f", "concurrency": 2, "prefetch": 5}}}})
    assert parse_config(tomllib.loads(to_toml(config))).consumer == config.consumer


@pytest.mark.parametrize(
    "text, key, problem",
    [
        ('[consumer.services.""]\nhandler = "a:b"\n', "consumer.services.", "the name must not be empty"),
        (f'[consumer.services.{"x" * 65}]\nhandler = "a:b"\n', f"consumer.services.{'x' * 65}", "at most 64 bytes"),
        ('[consumer.services."a.b"]\nhandler = "a:b"\n', "consumer.services.a.b", "lowercase letters"),
        ('[consumer.services.Resize]\nhandler = "a:b"\n', "consumer.services.Resize", "lowercase letters"),
        ('[consumer.services."-x"]\nhandler = "a:b"\n', "consumer.services.-x", "starting with a letter"),
        ("[consumer.services.x]\nconcurrency = 2\n", "consumer.services.x.handler", "is required"),
        ('[consumer.services.x]\nhandler = "nocolon"\n', "consumer.services.x.handler", "module:function"),
        ('[consumer.services.x]\nhandler = "a:b"\nthreads = 2\n', "consumer.services.x.threads", "unknown key"),
        ('[consumer.services.x]\nhandler = "a:b"\nconcurrency = -1\n', "consumer.services.x.concurrency",
         "between 0 and 1024"),
        ('[consumer.services.x]\nhandler = "a:b"\nprefetch = "4"\n', "consumer.services.x.prefetch", "an integer"),
        ("[consumer]\nservices = 3\n", "consumer.services", "expected tables [consumer.services.<name>]"),
        ("[consumer]\nservices = { x = 3 }\n", "consumer.services.x", "expected a table"),
        ('[consumer]\nhandler = "a:b"\n[consumer.services.pdf]\nhandler = "c:d"\n', "consumer.handler",
         "[consumer.services.default] handler"),
    ],
)
def test_errors_name_the_service_key(tmp_path, text, key, problem):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.key == key and problem in caught.value.problem, str(caught.value)


def test_service_names_producers_may_ask_for():
    assert check_name("fraud-score_2") == "fraud-score_2"
    for bad in ("", "a.b", "x" * 65, "A", "#"):
        with pytest.raises(ValueError, match="service name"):
            check_name(bad)


def test_service_queues_are_quorum_with_dead_lettering_and_a_leader_locator():
    topology = TopologyConfig()
    steps = declaration_steps(topology, None) + service_queue_steps(topology, "resize", "least-leaders")
    declared = {kw["queue"]: kw.get("arguments") for method, kw in steps if method == "queue_declare"}
    bound = {kw["queue"]: kw["routing_key"] for method, kw in steps if method == "queue_bind"
             and kw["exchange"] == topology.request_exchange}
    assert bound == {"burrow.requests": "burrow.requests", "burrow.requests.resize": "resize"}
    resize = declared["burrow.requests.resize"]
    assert resize["x-queue-type"] == "quorum" and resize["x-dead-letter-strategy"] == "at-least-once"
    assert resize["x-delivery-limit"] == topology.delivery_limit
    assert resize["x-queue-leader-locator"] == "least-leaders"
    # The default queue keeps the arguments earlier releases declared it with.
    assert "x-queue-leader-locator" not in declared["burrow.requests"]


@pytest.mark.parametrize("version, locator", [(b"3.10.8", "least-leaders"), (b"3.13.7", "least-leaders"),
                                              (b"4.0.5", "balanced"), ("4.1.0", "balanced"), (None, "least-leaders")])
def test_leader_locator_follows_the_broker_version(version, locator):
    assert leader_locator({} if version is None else {"version": version}) == locator


def test_json_requests_are_accepted_by_default():
    properties = pika.BasicProperties(reply_to="r", correlation_id="c", content_type="application/json")
    assert validate_request(properties, b'{"a": 1}', max_message_bytes=100,
                            content_types=ConsumerConfig().content_types, now=0) is None


@pytest.mark.parametrize("path, unit", [("/etc/burrow/consumer.toml", "burrow-consumer.service"),
                                        ("/etc/burrow/consumer-2.toml", "burrow-consumer@2.service"),
                                        ("/srv/other.toml", None)])
def test_burrow_status_reads_the_packaged_units_status_line(path, unit):
    assert consumer_unit(path) == unit
