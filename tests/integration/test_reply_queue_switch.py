"""The default reply queue type follows the broker nodes, and switching it loses no reply.

``topology.reply_queue_type = "auto"``, the default: classic with one node, quorum with several. A
producer whose host list grows from one node to three (``Producer.use_brokers``, what a SIGHUP
reload of ``rabbitmq.hosts`` calls) replies on the quorum queue from then on, and drains the
classic queue of the replies to the requests it published before. The three "nodes" are three
addresses of the test's one broker (127.0.0.1, localhost and the IPv4-mapped ::ffff:127.0.0.1), so
the test needs no cluster: what it checks is the switch, counted per request id."""

from __future__ import annotations

import dataclasses
import json
import signal
import threading

import pytest

from burrow.config import BurrowConfig, RabbitMQConfig, to_toml
from burrow.handlers import RequestContext
from burrow.tools.sendclient import UnixHTTPConnection
from burrow.topology import reply_queue_name

from broker_helpers import queue_depth, queue_exists
from waiting import wait_for

BEFORE = 120
AFTER = 120


def three_nodes(rabbitmq: RabbitMQConfig) -> RabbitMQConfig:
    """The same broker under three addresses: a host list of three nodes."""
    port = rabbitmq.port
    return dataclasses.replace(rabbitmq, hosts=(f"127.0.0.1:{port}", f"localhost:{port}", f"[::ffff:127.0.0.1]:{port}"))


class HeldHandler:
    """Echoes every request once ``release`` is set, so requests stay in flight across the switch."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, body: bytes, context: RequestContext) -> bytes:
        self.release.wait(60)
        return b"Consumer processed: " + body


def class_names(config: BurrowConfig, instance_id: str) -> tuple[str, str]:
    topology = config.topology
    classic = reply_queue_name(dataclasses.replace(topology, reply_queue_type="classic"), instance_id)
    quorum = reply_queue_name(dataclasses.replace(topology, reply_queue_type="quorum"), instance_id)
    return classic, quorum


def test_the_default_reply_queue_is_classic_on_one_node_and_quorum_on_three(make_config):
    from burrow.producer import Producer

    config = make_config()
    assert config.topology.reply_queue_type == "auto"
    assert Producer(config).reply_queue_type == "classic"
    assert Producer(dataclasses.replace(config, rabbitmq=three_nodes(config.rabbitmq))).reply_queue_type == "quorum"


@pytest.mark.parametrize("grow", [True, False], ids=["one-to-three", "three-to-one"])
def test_switching_the_host_list_switches_the_reply_queue_type_and_loses_no_reply(grow, make_config, start_consumer,
                                                                                  start_producer, amqp):
    """One node to three moves the producer from its classic queue to its quorum queue; three to
    one moves it back (and deletes the drained quorum queue, which refuses the if-unused and
    if-empty deletes that a classic queue takes)."""
    config = make_config(producer={"request_timeout": 30.0}, consumer={"concurrency": 4})
    before_nodes, after_nodes = config.rabbitmq, three_nodes(config.rabbitmq)
    if not grow:
        before_nodes, after_nodes = after_nodes, before_nodes
        config = dataclasses.replace(config, rabbitmq=before_nodes)
    handler = HeldHandler()
    consumer = start_consumer(config, handler=handler)
    producer = start_producer(config)
    classic, quorum = class_names(config, producer.instance_id)
    (old_type, old), (new_type, new) = (("classic", classic), ("quorum", quorum))[::1 if grow else -1]
    assert (producer.reply_queue_type, producer.reply_queue) == (old_type, old)

    expected: dict[str, bytes] = {}
    futures = {}
    for i in range(BEFORE):
        body = f"before-{i}".encode()
        future = producer.submit(body)
        futures[future.correlation_id], expected[future.correlation_id] = future, b"Consumer processed: " + body
    # Published and in the broker's hands, held by the consumer or queued, every one with the
    # old queue as its reply_to.
    wait_for(lambda: consumer.in_flight >= 16 and queue_depth(amqp, config.topology.request_queue) + consumer.in_flight
             == BEFORE, 20, "the requests to be held or queued")

    producer.use_brokers(after_nodes)
    for i in range(AFTER):  # submitted while the producer moves to the new host list
        body = f"after-{i}".encode()
        future = producer.submit(body)
        futures[future.correlation_id], expected[future.correlation_id] = future, b"Consumer processed: " + body
    wait_for(lambda: (producer.reply_queue_type, producer.reply_queue) == (new_type, new) and queue_exists(amqp, new)
             and producer.connected, 20, f"the producer consuming its {new_type} queue")
    reconnects = producer.reconnects
    handler.release.set()

    outcomes = {}
    for correlation_id, future in futures.items():
        try:
            outcomes[correlation_id] = future.result(timeout=40)
        except Exception as exc:  # noqa: BLE001 - every outcome is tallied below, by id
            outcomes[correlation_id] = repr(exc)
    lost = sorted(cid for cid in futures if outcomes[cid] != expected[cid])
    assert len(futures) == BEFORE + AFTER
    assert lost == [], f"{len(lost)} of {len(futures)} requests got no reply, e.g. {outcomes[lost[0]]}"
    wait_for(lambda: not queue_exists(amqp, old), 20, f"the drained {old_type} reply queue to be deleted")
    assert producer.stats().orphaned_replies == 0
    assert producer.reconnects == reconnects, "the drain cost the producer its connection"


def http(socket_path: str, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    connection = UnixHTTPConnection(socket_path, timeout=60)
    try:
        connection.request(method, target, body=body or None, headers={"Content-Length": str(len(body))} if body else {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def health(socket_path: str) -> dict:
    return json.loads(http(socket_path, "GET", "/v1/health")[1])


def test_a_sighup_that_grows_the_host_list_moves_the_daemon_to_quorum_and_loses_no_reply(make_config, start_consumer,
                                                                                          consumer_process):
    config = make_config()
    handler = HeldHandler()
    start_consumer(config, handler=handler)
    daemon = consumer_process(config, "producer", role="producer").start()
    daemon.wait_ready()
    assert health(daemon.socket_path)["reply_queue_type"] == "classic"
    assert "classic reply queue" in daemon.log()

    answers: dict[str, tuple[int, bytes]] = {}

    def post(name: str) -> None:
        answers[name] = http(daemon.socket_path, "POST", "/v1/requests", name.encode())

    threads = [threading.Thread(target=post, args=(f"http-{i}",)) for i in range(40)]
    for thread in threads:
        thread.start()
    wait_for(lambda: health(daemon.socket_path)["in_flight"] == 40, 20, "40 requests in flight")
    grown = dataclasses.replace(daemon.config, rabbitmq=three_nodes(daemon.config.rabbitmq))
    # One node or a list, never both: the file names the nodes only in `hosts`.
    daemon.config_path.write_text("".join(line for line in to_toml(grown).splitlines(keepends=True)
                                          if not line.startswith("host = ")))
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: health(daemon.socket_path)["reply_queue_type"] == "quorum" and health(daemon.socket_path)["broker_connected"],
             30, "the daemon on its quorum reply queue")
    handler.release.set()
    for thread in threads:
        thread.join(60)
    lost = sorted(name for name in (f"http-{i}" for i in range(40))
                  if answers.get(name) != (200, b"Consumer processed: " + name.encode()))
    assert lost == [], {name: answers.get(name) for name in lost[:3]}
    assert "Reloaded" in daemon.log() and "rabbitmq.hosts" in daemon.log()
