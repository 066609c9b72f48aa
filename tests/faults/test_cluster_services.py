"""Named services on a 3-node loopback cluster: their queues' leaders spread over the nodes, and
every service still answers after the node leading the most of them is killed.

One consumer connection declares all three service queues through one node. Left to the broker's
default (``client-local``) every leader would sit on that node, and its one core would carry every
service; burrow asks for the node with the fewest leaders (``x-queue-leader-locator``), so three
services on three nodes lead from at least two of them.
"""

from __future__ import annotations

import collections
import uuid
from typing import Iterator

import pika
import pytest

from burrow.config import BurrowConfig, ConsumerConfig, ProducerConfig, ServiceConfig, TopologyConfig
from burrow.services import queue_name
from burrow.tools.localcluster import LocalCluster
from burrow.topology import reply_queue_name

from broker_helpers import delete_topology

pytestmark = [pytest.mark.faults, pytest.mark.cluster, pytest.mark.timeout(300)]

SERVICES = ("images", "pdf", "fraud")


@pytest.fixture
def config(cluster: LocalCluster, names: TopologyConfig, request: pytest.FixtureRequest) -> Iterator[BurrowConfig]:
    """Three services on every node; the test's queues are deleted afterwards, all nodes running."""
    built = BurrowConfig(
        rabbitmq=cluster.rabbitmq_config(connection_name=f"test:{request.node.name}", reconnect_initial_delay=0.2,
                                         reconnect_max_delay=2.0, heartbeat=10),
        topology=names,
        producer=ProducerConfig(instance_id=f"p-{uuid.uuid4().hex[:8]}", request_timeout=60.0),
        consumer=ConsumerConfig(concurrency=2, services={name: ServiceConfig(handler="burrow.handlers:echo")
                                                         for name in SERVICES}),
    )
    yield built
    for node in cluster.nodes:
        if not node.running:
            cluster.restart(node)
    connection = pika.BlockingConnection(pika.URLParameters(cluster.nodes[0].amqp_url))
    try:
        channel = connection.channel()
        delete_topology(channel, names, queues=(reply_queue_name(names, built.producer.instance_id, built.rabbitmq),
                                                *(queue_name(names.request_queue, name) for name in SERVICES)))
    finally:
        connection.close()


def test_service_leaders_spread_and_every_service_survives_a_node(config, cluster, start_consumer, start_producer):
    consumer = start_consumer(config)
    leaders = {name: cluster.queue_leader(queue_name(config.topology.request_queue, name)) for name in SERVICES}
    placed = collections.Counter(node.nodename for node in leaders.values())
    assert len(placed) >= 2, f"every service queue led from one node: {dict(placed)}"
    producer = start_producer(config)
    for name in SERVICES:
        assert producer.call(name.encode(), service=name, timeout=30) == b"Consumer processed: " + name.encode()
    victim = cluster.node_named(placed.most_common(1)[0][0])
    cluster.kill(victim)
    for name in SERVICES:
        body = f"{name} after the kill".encode()
        assert producer.call(body, service=name, timeout=90) == b"Consumer processed: " + body, name
        assert cluster.queue_leader(queue_name(config.topology.request_queue, name)) is not victim
    assert consumer.connected
