"""One service split over 4 queues on a 3-node loopback cluster: the partitions' leaders spread over
the nodes, and the partitions share a burst evenly, both in what they take and in how fast the
service's consumer drains each of them.

The burst goes out while the service's consumer is stopped, so that each partition's share can be
read from the broker; then the consumer starts and the test notes, per partition, when its queue
ran empty. Each share, and each partition's drain rate, must be within 20 % of the mean. The
figures are printed (``-s``) for the README's Capacity section.
"""

from __future__ import annotations

import collections
import time
import uuid
from typing import Iterator

import pika
import pytest

from burrow.config import BurrowConfig, ConsumerConfig, ProducerConfig, ServiceConfig, TopologyConfig
from burrow.partitions import hash_exchange, partition_queues
from burrow.tools.localcluster import LocalCluster
from burrow.topology import reply_queue_name

from broker_helpers import delete_topology, queue_depth
from replies import reply_or_error
from waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.cluster, pytest.mark.timeout(600)]

SERVICE = "hot"
PARTITIONS = 4
BURST = 8_000
#: How far each partition's share of the burst, and its drain rate, may be from the mean.
EVEN = 0.20


@pytest.fixture
def config(cluster: LocalCluster, names: TopologyConfig, request: pytest.FixtureRequest) -> Iterator[BurrowConfig]:
    """The split service on every node; its queues and exchanges are deleted afterwards."""
    built = BurrowConfig(
        rabbitmq=cluster.rabbitmq_config(connection_name=f"test:{request.node.name}", reconnect_initial_delay=0.2,
                                         reconnect_max_delay=2.0, heartbeat=10),
        topology=names,
        producer=ProducerConfig(instance_id=f"p-{uuid.uuid4().hex[:8]}", request_timeout=300.0,
                                max_in_flight=2 * BURST),
        consumer=ConsumerConfig(concurrency=8, services={SERVICE: ServiceConfig(handler="burrow.handlers:echo",
                                                                                partitions=PARTITIONS)}),
    )
    yield built
    connection = pika.BlockingConnection(pika.URLParameters(cluster.nodes[0].amqp_url))
    try:
        channel = connection.channel()
        delete_topology(channel, names, queues=(reply_queue_name(names, built.producer.instance_id, built.rabbitmq),
                                                *partition_queues(names, SERVICE, PARTITIONS)))
        channel.exchange_delete(exchange=hash_exchange(names, SERVICE))
    finally:
        connection.close()


def test_partitions_spread_their_leaders_and_share_a_burst_evenly(config, cluster, start_consumer, start_producer):
    queues = partition_queues(config.topology, SERVICE, PARTITIONS)
    start_consumer(config).stop(timeout=10)
    leaders = collections.Counter(cluster.queue_leader(queue).nodename for queue in queues)
    assert len(leaders) >= 2, f"every partition led from one node: {dict(leaders)}"

    producer = start_producer(config)
    futures = [producer.submit(f"b{i}".encode(), service=SERVICE) for i in range(BURST)]
    inspect = pika.BlockingConnection(pika.URLParameters(cluster.nodes[0].amqp_url))
    try:
        channel = inspect.channel()
        wait_for(lambda: sum(queue_depth(channel, queue) for queue in queues) == BURST, 120,
                 f"the burst of {BURST} in the partitions")
        taken = [queue_depth(channel, queue) for queue in queues]
        started = time.monotonic()
        consumer = start_consumer(config)
        emptied: dict[int, float] = {}

        def drained() -> bool:
            for index, queue in enumerate(queues):
                if index not in emptied and queue_depth(channel, queue) == 0:
                    emptied[index] = time.monotonic() - started
            return len(emptied) == PARTITIONS

        wait_for(drained, 300, "every partition to be drained")
    finally:
        inspect.close()
    outcomes = {i: reply_or_error(future, 300) for i, future in enumerate(futures)}
    lost = {i: (futures[i].correlation_id, reply) for i, reply in outcomes.items()
            if reply != f"Consumer processed: b{i}".encode()}
    answered = BURST - len(lost)
    rates = [taken[index] / emptied[index] for index in range(PARTITIONS)]
    print(f"\npartitions {PARTITIONS} on 3 nodes, leaders {dict(leaders)}; burst {BURST}: taken {taken}, "
          f"drained in {[round(emptied[i], 2) for i in range(PARTITIONS)]} s, {[round(r) for r in rates]} req/s per "
          f"partition, {BURST / max(emptied.values()):.0f} req/s in all")
    assert lost == {}, f"{len(lost)} of {BURST} not answered, by index: {dict(list(lost.items())[:5])}"
    # Nothing crashed: a redelivery would be a request sent back to its queue unrun.
    assert consumer.stats().redelivered == 0
    mean_share = BURST / PARTITIONS
    uneven = [count for count in taken if abs(count - mean_share) > EVEN * mean_share]
    assert uneven == [], f"partitions took {taken} of {BURST}: not within {EVEN:.0%} of {mean_share:.0f} each"
    mean_rate = sum(rates) / PARTITIONS
    slow = [round(rate) for rate in rates if abs(rate - mean_rate) > EVEN * mean_rate]
    assert slow == [], f"drain rates {[round(r) for r in rates]} req/s: not within {EVEN:.0%} of {mean_rate:.0f}"
