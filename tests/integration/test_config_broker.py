"""Property: a configuration ``load_config`` accepts works. On a sample of generated valid configs
the consumer and the producer start on the suite's broker and answer a request.

Each example draws every key the schema lists from its own rule (numbers anywhere in their range,
both ends included, and every choice of each enumeration), except the keys that say where the broker
and this example's queues are, which handler runs, and where sockets and ports go. The TOML goes
through ``load_config`` as a daemon's file would. Keys added to the schema later are drawn too,
with no change here.

One request passes its own 30 s timeout and must be answered; a second relies on
``producer.request_timeout``, the default deadline, and must be answered unless that deadline (valid
down to a millisecond) is shorter than a round trip. Engines and daemons are stopped with bounded
timeouts of the test's own, since a valid ``shutdown_timeout`` may be weeks.

In CI (the ``ci`` profile of tests/conftest.py, derandomized, so the same examples every run):
20 examples on the in-process engines (0.2-1 s each) and 4 through the daemons' processes and the
producer's HTTP API (3-6 s each): about 30 s on a loaded 2-core machine, broker start included.
"""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pika
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burrow.config import BurrowConfig, RabbitMQConfig, TopologyConfig, load_config
from burrow.config.rules import Between, Key, OneOf, Text, walk
from burrow.config.writing import toml_value
from burrow.consumer import Consumer
from burrow.errors import RequestTimeout
from burrow.producer import Producer
from burrow.tools.localbroker import free_port

from broker_helpers import delete_topology
from processes import burrow

KEYS = list(walk(BurrowConfig))
BODY = b"x"  # one byte: producer.max_message_bytes and consumer.max_message_bytes may be 1


def fixed_keys(amqp_url: str, prefix: str) -> dict[str, Any]:
    """The keys this test decides: the broker, this example's names, the handler, no TLS, and keys
    that only the daemons (not the in-process engines) use."""
    broker = RabbitMQConfig.from_url(amqp_url)
    names = TopologyConfig.prefixed(prefix)
    fixed: dict[str, Any] = {f"rabbitmq.{key}": getattr(broker, key)
                             for key in ("host", "port", "virtual_host", "username", "password")}
    fixed.update({f"topology.{item.name}": getattr(names, item.name) for item in dataclasses.fields(names)
                  if item.name.endswith(("_exchange", "_queue", "_prefix"))})
    fixed.update({
        "rabbitmq.hosts": None, "rabbitmq.password_file": None, "rabbitmq.tls.enabled": False,
        "producer.instance_id": f"prop-{uuid.uuid4().hex[:8]}", "producer.socket": "/nonexistent/burrow.sock",
        "consumer.handler": "burrow.handlers:echo",
        "consumer.content_types": ("application/octet-stream", "text/plain"),
        "metrics.enabled": False, "metrics.host": "127.0.0.1",
    })
    return fixed


def valid(key: Key) -> st.SearchStrategy[Any]:
    """Any value ``key``'s rule accepts."""
    rule = key.rule
    if isinstance(rule, Between):
        if key.kind is int:
            return st.integers(min_value=int(rule.low), max_value=int(rule.high))
        return st.floats(min_value=rule.low, max_value=rule.high)
    if isinstance(rule, OneOf):
        return st.sampled_from(rule.choices)
    if key.kind is bool:
        return st.booleans()
    if isinstance(rule, Text):
        return st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=30).filter(
            lambda value: rule.problem(value) is None)
    raise AssertionError(f"{key.dotted}: no strategy for a valid value; add one here or to fixed_keys()")


#: Keys of tables of named tables (``<name>`` in them): none is written, so each example runs the
#: default service alone.
NAMED = {key.dotted for key in KEYS if "<name>" in key.dotted}
DRAWN = [key for key in KEYS if key.dotted not in {*fixed_keys("amqp://guest:guest@localhost/", "p"), *NAMED}]
VALID_CONFIGS = st.fixed_dictionaries({key.dotted: valid(key) for key in DRAWN})


def write_keys(path: Path, values: dict[str, Any]) -> None:
    """Write the keys as a TOML file, one table per section (keys valued None left out)."""
    tables: dict[str, list[str]] = {}
    for dotted, value in values.items():
        if value is not None:
            section, _, name = dotted.rpartition(".")
            tables.setdefault(section, []).append(f"{name} = {toml_value(value)}")
    path.write_text("".join(f"[{section}]\n" + "\n".join(lines) + "\n" for section, lines in tables.items()))


def clean_up(amqp_url: str, topology: TopologyConfig, reply_queue: str = "") -> None:
    """Remove this example's queues and exchanges (and its reply queue, unless direct reply-to)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        queues = [reply_queue] if reply_queue and not reply_queue.startswith("amq.") else []
        delete_topology(connection.channel(), topology, queues)
    finally:
        connection.close()


def answered_by_default_deadline(producer: Producer, request_timeout: float) -> None:
    """A request on ``producer.request_timeout`` is answered, or times out when that deadline is
    shorter than a round trip; it never fails otherwise (an infinite deadline once did)."""
    future = producer.submit(BODY)
    try:
        assert future.result(timeout=min(request_timeout, 30.0) + 10.0) == b"Consumer processed: " + BODY
    except RequestTimeout:
        assert request_timeout < 30.0, f"a request with a {request_timeout} s deadline timed out"


@settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=VALID_CONFIGS)
def test_a_valid_config_starts_both_sides_and_answers_a_request(broker, drawn):
    prefix = f"prop.{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="burrow-prop-") as folder:
        path = Path(folder) / "burrow.toml"
        write_keys(path, {**drawn, **fixed_keys(broker.amqp_url, prefix)})
        config = load_config(path)
    consumer = Consumer(config).start()
    producer: Producer | None = None
    try:
        assert consumer.wait_ready(30), f"the consumer did not become ready with {drawn}"
        producer = Producer(config).start()
        assert producer.wait_ready(30), f"the producer did not become ready with {drawn}"
        assert producer.call(BODY, timeout=30) == b"Consumer processed: " + BODY
        answered_by_default_deadline(producer, config.producer.request_timeout)
    finally:
        if producer is not None:
            producer.stop(timeout=5)
        consumer.stop(timeout=10)
        clean_up(broker.amqp_url, config.topology, producer.reply_queue if producer else "")


def send(socket: str, *options: str) -> subprocess.CompletedProcess[str]:
    """``burrow send`` one byte through the producer daemon's API, as a local application would."""
    return burrow("send", "--socket", socket, *options, BODY.decode(), timeout=90)


@settings(max_examples=4, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(drawn=VALID_CONFIGS, metrics=st.booleans(), level=st.sampled_from(["DEBUG", "INFO", "info"]))
def test_a_valid_config_runs_both_daemons_and_answers_over_the_api(broker, consumer_process, drawn, metrics, level):
    """The same property through ``burrow-consumer`` and ``burrow-producer`` processes, so that the
    keys only the daemons use (API socket mode, request_timeout and unavailable_wait as the API's
    defaults, metrics) are exercised too. The consumer logs at INFO or DEBUG (readiness is read from
    its log; the test kit's producer always logs at DEBUG) and the producer's socket is the test
    kit's. ``consumer_process`` only collects the processes to kill should an example fail; each
    example stops its own. 4 examples, about 5 s each."""
    prefix = f"prop.{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="burrow-prop-") as folder:
        path = Path(folder) / "burrow.toml"
        write_keys(path, {**drawn, **fixed_keys(broker.amqp_url, prefix), "metrics.port": free_port(),
                            "metrics.enabled": metrics, "logging.level": level})
        config = load_config(path)
    try:
        consumer = consumer_process(config, f"consumer-{prefix}")
        producer_config = dataclasses.replace(config, metrics=dataclasses.replace(config.metrics, port=free_port()))
        producer = consumer_process(producer_config, f"producer-{prefix}", role="producer")
        consumer.start().wait_ready(60)
        producer.start().wait_ready(60)
        result = send(producer.socket_path, "--timeout", "30")
        assert (result.returncode, result.stdout) == (0, f"Consumer processed: {BODY.decode()}\n"), result.stderr
        result = send(producer.socket_path)  # on producer.request_timeout, the API's default
        assert result.returncode == 0 or (config.producer.request_timeout < 30 and "504" in result.stderr), result
        assert producer.stop(timeout=60) == 0, producer.log()
        assert consumer.stop(timeout=60) == 0, consumer.log()
    finally:
        clean_up(broker.amqp_url, config.topology)


def test_every_key_is_drawn_or_fixed_by_the_test():
    fixed = fixed_keys("amqp://guest:guest@localhost/", "p")
    assert {key.dotted for key in KEYS} == {key.dotted for key in DRAWN} | set(fixed) | NAMED
    assert {"rabbitmq.heartbeat", "producer.request_timeout", "consumer.prefetch"} <= {key.dotted for key in DRAWN}
