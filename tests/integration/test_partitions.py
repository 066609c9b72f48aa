"""A service split over 4 queues on a real broker: each request in exactly one partition, an even
spread without keys, one partition per key, and the service's consumer answers them all."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from typing import Iterator

import pika
import pytest

from burrow.config import BurrowConfig, ServiceConfig
from burrow.partitions import hash_exchange, partition_queues

from broker_helpers import partition_of_each_request, queue_depth
from waiting import wait_for

SERVICE = "hot"
PARTITIONS = 4
UNKEYED = 20_000
#: Requests with a key: KEYS keys, PER_KEY requests each.
KEYS, PER_KEY = 20, 50
#: Each partition's share of the unkeyed requests must be within this of 1 / PARTITIONS.
TOLERANCE = 0.05


@pytest.fixture
def partitioned(make_config, amqp) -> Iterator[BurrowConfig]:
    """A config whose consumer serves ``SERVICE`` split over ``PARTITIONS`` queues; its partition
    queues and consistent-hash exchange are deleted afterwards."""
    # Every request stays in flight until the consumer is started again, after the count.
    config = make_config(producer={"max_in_flight": 2 * (UNKEYED + KEYS * PER_KEY)})
    service = ServiceConfig(handler="burrow_test_handlers:upper", partitions=PARTITIONS)
    config = dataclasses.replace(config, consumer=dataclasses.replace(config.consumer, services={SERVICE: service}))
    yield config
    for queue in partition_queues(config.topology, SERVICE, PARTITIONS):
        amqp.queue_delete(queue=queue)
    amqp.exchange_delete(exchange=hash_exchange(config.topology, SERVICE))


def test_four_partitions_share_20000_requests_and_keys_stay_on_one(partitioned, start_consumer, start_producer,
                                                                  broker, amqp):
    config = partitioned
    queues = partition_queues(config.topology, SERVICE, PARTITIONS)
    # A consumer of the service declares its exchange and partition queues; stopped, the requests
    # wait in the partitions to be counted there.
    start_consumer(config).stop(timeout=10)
    producer = start_producer(config)
    unkeyed = {future.correlation_id: future for future in
               (producer.submit(f"r{i}".encode(), service=SERVICE, timeout=600) for i in range(UNKEYED))}
    keyed = {}
    for round_ in range(PER_KEY):
        for k in range(KEYS):
            future = producer.submit(f"k{k}-{round_}".encode(), service=SERVICE, key=f"customer-{k}", timeout=600)
            keyed[future.correlation_id] = (f"customer-{k}", future)
    inspect = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        channel = inspect.channel()
        total = UNKEYED + KEYS * PER_KEY
        wait_for(lambda: sum(queue_depth(channel, queue) for queue in queues) >= total, 120,
                 f"{total} requests in the partition queues")
        found = partition_of_each_request(channel, queues)
    finally:
        inspect.close()

    # Exactly one partition per request, and no request elsewhere.
    assert set(found) == set(unkeyed) | set(keyed), "requests missing from every partition, or strangers there"
    twice = {cid: where for cid, where in found.items() if len(where) != 1}
    assert twice == {}, f"{len(twice)} requests in more than one partition, e.g. {list(twice.items())[:3]}"

    shares = Counter(found[cid][0][0] for cid in unkeyed)
    for index in range(PARTITIONS):
        share = shares[index] / UNKEYED
        assert abs(share - 1 / PARTITIONS) <= TOLERANCE, (
            f"partition {index} took {share:.1%} of {UNKEYED} unkeyed requests, not 25 % +/- 5 %: {dict(shares)}")

    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    for cid, (key, _future) in keyed.items():
        partitions_of_key[key].add(found[cid][0][0])
        assert found[cid][0][1] == key, f"request {cid} carries key {found[cid][0][1]!r}, not {key!r}"
    spread_keys = {key: sorted(where) for key, where in partitions_of_key.items() if len(where) > 1}
    assert spread_keys == {}, f"keys whose requests went to several partitions: {spread_keys}"
    assert len({min(where) for where in partitions_of_key.values()}) > 1, "every key hashed to one partition"

    # The service's consumer takes every partition: each request answered by its handler, per id.
    start_consumer(config)
    wrong = []
    for cid, future in [*unkeyed.items(), *((cid, future) for cid, (_key, future) in keyed.items())]:
        reply = future.result(timeout=300)
        if not (reply.startswith(b"upper:") and reply.endswith(b" " + cid.encode())):
            wrong.append((cid, reply))
    assert wrong == [], f"{len(wrong)} wrong replies, e.g. {wrong[:3]}"
    assert [queue_depth(amqp, queue) for queue in queues] == [0] * PARTITIONS
