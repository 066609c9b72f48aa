"""Shared fixtures: a real RabbitMQ broker, per-test topology names, configs and consumer processes.

The broker comes from ``AMQP_URL`` when set; otherwise a throwaway node of Debian's
``rabbitmq-server`` on free loopback ports (stopped at the end of the session); otherwise
testcontainers' RabbitMQ where a Docker engine answers. Each test gets its own exchange and queue
names (deleted afterwards) and connections named after it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pika
import pytest
from hypothesis import settings as hypothesis_settings

from burrow.config import BurrowConfig, ConsumerConfig, ProducerConfig, RabbitMQConfig, ServiceConfig, TopologyConfig
from burrow.services import queue_name
from burrow.tools.localbroker import RABBITMQ_SERVER, LocalBroker

from broker_helpers import delete_topology
from processes import Daemon

#: A counted fault scenario gets its test's verdict in its tally (tests/support/verdicts.py).
pytest_plugins = ["verdicts"]

# Property-based tests draw the same examples on every run and machine: the "ci" profile is loaded
# unless HYPOTHESIS_PROFILE names another; it derandomizes, keeps no example database and has no
# per-example deadline (a loaded 2-core machine is slow). A test's own settings name how many
# examples it runs (200 when it names none). HYPOTHESIS_PROFILE=explore draws fresh random examples.
hypothesis_settings.register_profile("ci", max_examples=200, derandomize=True, database=None, deadline=None)
hypothesis_settings.register_profile("explore", deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclasses.dataclass
class Broker:
    """The broker under test; ``local`` is set when this suite started (and can restart) it."""

    amqp_url: str
    local: LocalBroker | None = None


def _docker_broker() -> Iterator[Broker] | None:
    try:
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13")
        container.start()
    except Exception:
        return None

    def gen() -> Iterator[Broker]:
        try:
            params = container.get_connection_params()
            yield Broker(f"amqp://guest:guest@{params.host}:{params.port}/%2F")
        finally:
            container.stop()

    return gen()


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    if os.environ.get("AMQP_URL"):
        yield Broker(os.environ["AMQP_URL"])
        return
    if Path(RABBITMQ_SERVER).exists():
        with LocalBroker(name=f"burrow-test-{os.getpid()}") as node:
            yield Broker(node.amqp_url, node)
        return
    docker = _docker_broker()
    if docker is None:
        pytest.fail("no broker: set AMQP_URL, apt-get install rabbitmq-server, or run a Docker engine")
    yield from docker


@pytest.fixture
def local_broker(broker: Broker) -> LocalBroker:
    """The suite's own node, for tests that stop, restart or pause the broker."""
    if broker.local is None:
        pytest.skip("restarts the broker: needs the suite's own node, not an external AMQP_URL")
    return broker.local


def _slug(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", nodeid.split("::")[-1]).strip("-")[:40]


@pytest.fixture
def names(request: pytest.FixtureRequest) -> TopologyConfig:
    """Exchange and queue names unique to this test."""
    prefix = f"t.{_slug(request.node.nodeid)}.{uuid.uuid4().hex[:6]}"
    return TopologyConfig.prefixed(prefix, delivery_limit=3, reply_queue_expires=600)


@pytest.fixture
def amqp(broker: Broker, request: pytest.FixtureRequest) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    """A plain blocking channel for inspecting and poking the broker directly."""
    params = pika.URLParameters(broker.amqp_url)
    params.client_properties = {"connection_name": f"test-inspect:{request.node.name}"}
    # Nothing pumps this connection while a test waits on its own work: without heartbeats the
    # broker keeps it however long the test takes (it reset it after minutes on a loaded machine).
    params.heartbeat = 0
    connection = pika.BlockingConnection(params)
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


@pytest.fixture
def make_config(broker: Broker, names: TopologyConfig, request: pytest.FixtureRequest) -> Iterator[Callable[..., BurrowConfig]]:
    """Build a test config on the test's broker and names; deletes the test's topology afterwards,
    service queues included (``services={name: handler}`` adds ``[consumer.services.<name>]``)."""
    service_names: set[str] = set()

    def build(*, producer: dict | None = None, consumer: dict | None = None, topology: dict | None = None,
              rabbitmq: dict | None = None, services: dict[str, str] | None = None) -> BurrowConfig:
        rabbit_settings = {
            "connection_name": f"test:{request.node.name}",
            "reconnect_initial_delay": 0.2,
            "reconnect_max_delay": 2.0,
            "heartbeat": 10,
            **(rabbitmq or {}),
        }
        rabbit = RabbitMQConfig.from_url(broker.amqp_url, **rabbit_settings)
        config = BurrowConfig(
            rabbitmq=rabbit,
            topology=dataclasses.replace(names, **(topology or {})),
            producer=ProducerConfig(**{"instance_id": f"p-{uuid.uuid4().hex[:8]}", "request_timeout": 30.0, **(producer or {})}),
            consumer=ConsumerConfig(**{"services": {name: ServiceConfig(handler=handler)
                                                    for name, handler in (services or {}).items()},
                                       **(consumer or {})}),
        )
        service_names.update(config.consumer.services)
        return config

    yield build
    try:
        connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    except pika.exceptions.AMQPError:
        return  # a test that left the broker down has its own failure to report
    try:
        delete_topology(connection.channel(), names,
                        [queue_name(names.request_queue, service) for service in sorted(service_names)])
    finally:
        connection.close()


@pytest.fixture
def consumer_process(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Make daemon processes (consumers, or producers with ``role="producer"``) in the test's folder,
    not yet started; any still running are killed at the end of the test."""
    made: list[Daemon] = []

    def make(config: BurrowConfig, name: str = "consumer", role: str = "consumer") -> Daemon:
        daemon = Daemon(role, config, tmp_path, name)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.kill()


@contextlib.contextmanager
def _engines(default_cls: type, ready: Callable[[Any], bool], stop: Callable[[Any], object]) -> Iterator[Callable[..., Any]]:
    """Yield ``start(config, cls=..., **kwargs)`` that starts an engine and waits until it is ready;
    every engine started is stopped when the block ends."""
    running: list[Any] = []

    def start(config: BurrowConfig, *, cls: type = default_cls, **kwargs: object) -> Any:
        engine = cls(config, **kwargs).start()
        running.append(engine)
        assert ready(engine), f"{cls.__name__} did not become ready"
        return engine

    try:
        yield start
    finally:
        for engine in running:
            stop(engine)


@pytest.fixture
def start_consumer() -> Iterator[Callable[..., Any]]:
    """Start in-process consumers (stopped, drained, at the end of the test)."""
    from burrow.consumer import Consumer

    with _engines(Consumer, lambda consumer: consumer.wait_ready(30), lambda consumer: consumer.stop(timeout=10)) as start:
        yield start


@pytest.fixture
def start_producer() -> Iterator[Callable[..., Any]]:
    """Start producers connected to the broker (closed at the end of the test); ``cls=`` picks a subclass."""
    from burrow.producer import Producer

    with _engines(Producer, lambda producer: producer.wait_ready(30), lambda producer: producer.stop(timeout=0)) as start:
        yield start


class CorrelationFormatter(logging.Formatter):
    """Log file lines with time, thread and logger, plus the correlation id a record carries as
    ``extra`` (burrow's per-request DEBUG records), so a run's log can follow one request."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(threadName)s %(name)s %(levelname)s %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        correlation_id = getattr(record, "CORRELATION_ID", None)
        return f"{line} [CORRELATION_ID={correlation_id}]" if correlation_id else line


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """With ``--log-file`` (``make faults`` keeps build/faults-debug.log), write each record's
    correlation id and leave pika's per-frame DEBUG records out, so the file stays readable."""
    plugin = config.pluginmanager.get_plugin("logging-plugin")
    if plugin is None or not config.getoption("log_file", None):
        return
    plugin.log_file_handler.setFormatter(CorrelationFormatter())
    logging.getLogger("pika").setLevel(logging.INFO)
