"""Clients of a 3-node RabbitMQ cluster: spread over the nodes, and nothing lost when a node dies.

One cluster of three throwaway nodes on loopback (``LocalCluster``, about 20-40 s to form) serves
the whole module. The fault scenarios SIGKILL one node under a bounded load (counted per request
id from the caller's side, like the other fault scenarios, and reported in docs/reliability.md)
and start it again after the load, so every test begins with three running nodes:

- the node the producer is connected to, which also leads its quorum reply queue (RabbitMQ places
  a new quorum queue's leader on the declaring client's node): replies in flight survive it;
- the node the consumer consumes through;
- the node leading the request queue, with every client connected elsewhere;
- in direct reply-to mode, the producer's node: replies to the old connection are gone and the
  producer republishes what is still pending.

Their tallies are named ``failover-*``: ``cluster-*`` is the deployed nspawn cluster's
(tests/system/test_cluster.py), which docs/reliability.md reports in a section of its own.
"""

from __future__ import annotations

import collections
import dataclasses
import uuid
from typing import Any, Callable, Iterator

import pika
import pytest

from burrow.config import BurrowConfig, ConsumerConfig, ProducerConfig, TopologyConfig, load_config
from burrow.producer import Producer
from burrow.tools.localbroker import LocalBroker
from burrow.tools.localcluster import LocalCluster
from burrow.topology import declaration_steps, reply_queue_name

from broker_helpers import delete_topology
from faultcheck import (  # noqa: F401 - republished is a fixture
    HandlerLog,
    RepublishLog,
    begin_scenario,
    finish_scenario,
    republished,
    wait_for,
)
from loads import Load
from processes import write_config

pytestmark = [pytest.mark.faults, pytest.mark.cluster, pytest.mark.timeout(240)]

#: Requests per fault scenario, at RATE per second: the kill lands after KILL_AFTER answers.
REQUESTS = 2000
RATE = 250
KILL_AFTER = 400


@pytest.fixture
def healthy_cluster(cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The module's cluster with all three nodes running, before and after the test."""
    for node in cluster.nodes:
        if not node.running:
            cluster.restart(node)
    yield cluster
    for node in cluster.nodes:
        if not node.running:
            cluster.restart(node)


def channel_on(node: LocalBroker) -> tuple[pika.BlockingConnection, Any]:
    connection = pika.BlockingConnection(pika.URLParameters(node.amqp_url))
    return connection, connection.channel()


@pytest.fixture
def cluster_config(healthy_cluster: LocalCluster, names: TopologyConfig,
                   request: pytest.FixtureRequest) -> Iterator[Callable[..., BurrowConfig]]:
    """Build configs listing every node (or the ``hosts`` given); delete the test's queues after."""
    instances: list[str] = []

    def build(*, hosts: tuple[str, ...] | None = None, connection_name: str | None = None,
              producer: dict | None = None, consumer: dict | None = None) -> BurrowConfig:
        settings = ProducerConfig(**{"instance_id": f"p-{uuid.uuid4().hex[:8]}", "request_timeout": 60.0,
                                     **(producer or {})})
        instances.append(settings.instance_id)
        rabbitmq = healthy_cluster.rabbitmq_config(
            connection_name=connection_name or f"test:{request.node.name}",
            reconnect_initial_delay=0.2, reconnect_max_delay=2.0, heartbeat=10,
            **({"hosts": hosts} if hosts else {}),
        )
        return BurrowConfig(rabbitmq=rabbitmq, topology=names, producer=settings,
                            consumer=ConsumerConfig(**(consumer or {})))

    yield build
    connection, channel = channel_on(next(node for node in healthy_cluster.nodes if node.running))
    try:
        delete_topology(channel, names, [reply_queue_name(dataclasses.replace(names, reply_queue_type=kind), instance)
                                         for instance in instances for kind in ("quorum", "classic")])
    finally:
        connection.close()


def node_of(cluster: LocalCluster, engine: Any, index: int = 0) -> LocalBroker:
    """The node of the engine's ``index``-th connection, as the engine reports it."""
    return cluster.node_at(engine.broker_links()[index].node.port)


def test_config_file_with_every_node_serves_requests(cluster_config, consumer_process, healthy_cluster, tmp_path):
    config = cluster_config()
    path = write_config(config, tmp_path / "cluster.toml")
    loaded = load_config(path)
    assert [str(node) for node in loaded.rabbitmq.nodes()] == list(healthy_cluster.hosts)
    consumer = consumer_process(loaded).start()
    consumer.wait_ready()
    with Producer(loaded) as producer:
        assert producer.call(b"hello", timeout=30) == b"Consumer processed: hello"
    assert "Consumer-consume connected to 127.0.0.1:" in consumer.log()


def test_clients_spread_over_the_nodes_and_say_where(cluster_config, healthy_cluster):
    """Twelve producers each pick a node at random: with three nodes, all twelve on one node has a
    chance of 3 in 3^12 (1 in 177,147)."""
    producers: dict[str, Producer] = {}
    try:
        for index in range(12):
            name = f"spread-{index}-{uuid.uuid4().hex[:6]}"
            producers[name] = Producer(cluster_config(connection_name=name, producer={"reply_mode": "direct"})).start()
        wait_for(lambda: all(p.connected for p in producers.values()), 60, "twelve producers connected")
        placed: collections.Counter[str] = collections.Counter()
        for name, producer in producers.items():
            (broker_side,) = healthy_cluster.connections(name)
            assert node_of(healthy_cluster, producer) is broker_side, "the producer reports another node than the broker"
            placed[broker_side.nodename] += 1
    finally:
        for producer in producers.values():
            producer.close(timeout=0)
    assert len(placed) >= 2, f"every producer on one node: {dict(placed)}"


def run_kill_scenario(request: pytest.FixtureRequest, cluster: LocalCluster, scenario: str, title: str,
                      victim_of: Callable[[Any, Any], LocalBroker], producer: Any, consumer: Any,
                      log: HandlerLog, republished: RepublishLog, prefix: str) -> tuple[Any, LocalBroker]:
    """Run the bounded load, SIGKILL the node ``victim_of(producer, consumer)`` after KILL_AFTER
    answers, let the load finish on the other two nodes, then count and check it."""
    run = begin_scenario(request, scenario, title)
    load = Load(producer, REQUESTS, prefix=prefix, rate=RATE, timeout=90).start()
    load.wait_answered(KILL_AFTER, 60)
    victim = victim_of(producer, consumer)
    on_victim = {"producer": node_of(cluster, producer) is victim,
                 "consumer_consume": node_of(cluster, consumer, 0) is victim,
                 "consumer_publish": node_of(cluster, consumer, 1) is victim}
    cluster.kill(victim)
    answered_at_kill = load.answered()
    load.finish(150)
    tally = load.tally(run, log, republished)
    # Bring the node back before the test's queues are deleted, so that no member is left behind.
    cluster.restart(victim)
    tally.notes.update(answered_at_kill=answered_at_kill, killed=victim.name.rsplit("-", 1)[-1],
                       producer_failovers=producer.broker_links()[0].failovers,
                       consumer_failovers=sum(link.failovers for link in consumer.broker_links()),
                       **{f"{name}_on_killed_node": value for name, value in on_victim.items()})
    finish_scenario(request, tally)
    assert answered_at_kill < REQUESTS, "the load finished before the kill; the scenario proved nothing"
    return tally, victim


def test_kill_the_producers_node_which_leads_its_reply_queue(request, cluster_config, healthy_cluster,
                                                             start_consumer, start_producer, republished):
    log = HandlerLog()
    config = cluster_config(consumer={"concurrency": 8})
    consumer = start_consumer(config, handler=log.handler(delay=0.01))
    producer = start_producer(config)
    # The default reply queue type ("auto") is quorum with every node listed.
    assert (config.topology.reply_queue_type, producer.reply_queue_type) == ("auto", "quorum")
    reply_leader = healthy_cluster.queue_leader(producer.reply_queue)
    assert reply_leader is node_of(healthy_cluster, producer), "the reply queue's leader is not on the producer's node"
    tally, victim = run_kill_scenario(
        request, healthy_cluster, "failover-producer-node",
        "Loopback cluster: SIGKILL of the producer's node, which leads its quorum reply queue",
        lambda p, _c: node_of(healthy_cluster, p), producer, consumer, log, republished, "pnode")
    assert producer.broker_links()[0].failovers >= 1 and node_of(healthy_cluster, producer) is not victim
    assert healthy_cluster.queue_leader(producer.reply_queue) is not victim


def test_kill_the_consumers_node(request, cluster_config, healthy_cluster, start_consumer, start_producer, republished):
    log = HandlerLog()
    config = cluster_config(consumer={"concurrency": 8})
    consumer = start_consumer(config, handler=log.handler(delay=0.01))
    producer = start_producer(config)
    tally, victim = run_kill_scenario(
        request, healthy_cluster, "failover-consumer-node", "Loopback cluster: SIGKILL of the node the consumer consumes through",
        lambda _p, c: node_of(healthy_cluster, c, 0), producer, consumer, log, republished, "cnode")
    assert consumer.broker_links()[0].failovers >= 1 and node_of(healthy_cluster, consumer, 0) is not victim
    assert tally.redelivered_flagged >= 1, "the consumer held no unacked request on the killed node"


def test_kill_the_request_queue_leader_with_clients_elsewhere(request, cluster_config, healthy_cluster,
                                                              start_consumer, start_producer, republished, names):
    log = HandlerLog()
    leader, *others = healthy_cluster.nodes
    # Declared first through `leader`, the request queue's Raft leader lives there; the clients
    # list only the other two nodes, so losing the leader costs them no connection.
    probe = cluster_config()
    connection, channel = channel_on(leader)
    try:
        for method, kwargs in declaration_steps(probe.topology, None):
            getattr(channel, method)(**kwargs)
    finally:
        connection.close()
    assert healthy_cluster.queue_leader(names.request_queue) is leader
    config = cluster_config(hosts=tuple(f"127.0.0.1:{node.port}" for node in others), consumer={"concurrency": 8})
    consumer = start_consumer(config, handler=log.handler(delay=0.01))
    producer = start_producer(config)
    tally, _victim = run_kill_scenario(
        request, healthy_cluster, "failover-request-leader",
        "Loopback cluster: SIGKILL of the node leading the request queue (clients connected elsewhere)",
        lambda _p, _c: leader, producer, consumer, log, republished, "leader")
    assert healthy_cluster.queue_leader(names.request_queue) in others
    assert tally.reconnects == 0 and consumer.reconnects == 0, "a client lost its connection to a surviving node"


def test_kill_the_producers_node_in_direct_reply_mode(request, cluster_config, healthy_cluster,
                                                      start_consumer, start_producer, republished):
    log = HandlerLog()
    config = cluster_config(producer={"reply_mode": "direct"}, consumer={"concurrency": 8})
    consumer = start_consumer(config, handler=log.handler(delay=0.01))
    producer = start_producer(config)
    tally, _victim = run_kill_scenario(
        request, healthy_cluster, "failover-direct-producer-node",
        "Loopback cluster, direct reply-to: SIGKILL of the producer's node (pending requests republished)",
        lambda p, _c: node_of(healthy_cluster, p), producer, consumer, log, republished, "direct")
    assert tally.republished >= 1, "nothing was pending when the producer's node died"
