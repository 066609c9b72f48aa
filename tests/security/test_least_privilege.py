"""Least privilege, proven against the broker: the producer's and the consumer's users get exactly
the permission regexes the deployment gives them (docs: the preamble of issue 6), in a virtual host
of their own with burrow's default names; the daemons work, and each user is refused what the
other side does.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Iterator

import pika
import pika.exceptions
import pytest

from burrow.config import BurrowConfig, ConsumerConfig, ProducerConfig, RabbitMQConfig, ServiceConfig, TopologyConfig
from burrow.consumer import Consumer
from burrow.tools.localbroker import LocalBroker
from burrow.producer import Producer
from broker_permissions import permissions  # tests/support

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

GRANTED = permissions()
PRODUCER = GRANTED["producer"]
CONSUMER = GRANTED["consumer"]
#: Direct reply-to: replies go through the default exchange, whose name for permissions is amq.default.
CONSUMER_DIRECT_WRITE = r"^(burrow\.(x\.replies|x\.dead|requests|dead(\.notices)?)|amq\.default)$"


@dataclasses.dataclass
class Users:
    vhost: str
    producer: tuple[str, str]
    consumer: tuple[str, str]
    consumer_direct: tuple[str, str]
    broker: LocalBroker

    def config(self, user: tuple[str, str], **producer: object) -> BurrowConfig:
        rabbitmq = RabbitMQConfig(host="127.0.0.1", port=self.broker.port, virtual_host=self.vhost,
                                  username=user[0], password=user[1], reconnect_initial_delay=0.2,
                                  reconnect_max_delay=1.0, heartbeat=10)
        return BurrowConfig(rabbitmq=rabbitmq, topology=TopologyConfig(),
                            producer=ProducerConfig(instance_id=f"lp-{uuid.uuid4().hex[:6]}", **producer),
                            consumer=ConsumerConfig(concurrency=2))

    def channel(self, user: tuple[str, str]) -> pika.adapters.blocking_connection.BlockingChannel:
        parameters = pika.ConnectionParameters("127.0.0.1", self.broker.port, self.vhost,
                                               pika.PlainCredentials(*user))
        return pika.BlockingConnection(parameters).channel()


@pytest.fixture(scope="module")
def users(broker) -> Iterator[Users]:
    node: LocalBroker | None = broker.local
    if node is None:
        pytest.fail("least-privilege tests create users and a vhost with rabbitmqctl: they need the suite's own node")
    tag = uuid.uuid4().hex[:6]
    vhost = f"burrow-lp-{tag}"
    accounts = {role: (f"{role}-{tag}", uuid.uuid4().hex) for role in ("producer", "consumer", "consumer-direct")}
    node.ctl("add_vhost", vhost)
    for name, password in accounts.values():
        node.ctl("add_user", name, password)
    node.ctl("set_permissions", "-p", vhost, accounts["producer"][0], *PRODUCER)
    node.ctl("set_permissions", "-p", vhost, accounts["consumer"][0], *CONSUMER)
    node.ctl("set_permissions", "-p", vhost, accounts["consumer-direct"][0], CONSUMER[0], CONSUMER_DIRECT_WRITE, CONSUMER[2])
    try:
        yield Users(vhost, accounts["producer"], accounts["consumer"], accounts["consumer-direct"], node)
    finally:
        for name, _password in accounts.values():
            node.ctl("delete_user", name, check=False)
        node.ctl("delete_vhost", vhost, check=False)


def refused(action) -> pika.exceptions.ChannelClosedByBroker:  # type: ignore[no-untyped-def]
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        action()
    assert caught.value.reply_code == 403 and "ACCESS_REFUSED" in caught.value.reply_text, caught.value
    return caught.value


@pytest.mark.parametrize("mode", ["queue", "direct"])
def test_daemons_work_with_exactly_these_permissions(users, mode):
    consumer_user = users.consumer if mode == "queue" else users.consumer_direct
    consumer = Consumer(users.config(consumer_user)).start()
    producer = Producer(users.config(users.producer, reply_mode=mode)).start()
    try:
        assert consumer.wait_ready(30), "the consumer's user lacks a permission it needs"
        assert producer.wait_ready(30), "the producer's user lacks a permission it needs"
        assert producer.call(b"least", timeout=10) == b"Consumer processed: least"
    finally:
        producer.stop(timeout=0)
        consumer.stop(timeout=5)


def test_producer_user_cannot_consume_requests(users):
    Consumer(users.config(users.consumer)).start().stop(timeout=5)  # the topology exists
    channel = users.channel(users.producer)
    error = refused(lambda: channel.basic_consume("burrow.requests", lambda *_: None))
    assert "access to queue 'burrow.requests'" in error.reply_text and f"user '{users.producer[0]}'" in error.reply_text
    refused(lambda: users.channel(users.producer).basic_get("burrow.requests"))
    refused(lambda: users.channel(users.producer).queue_purge("burrow.requests"))


def test_consumer_user_cannot_publish_requests(users):
    channel = users.channel(users.consumer)
    channel.confirm_delivery()
    error = refused(lambda: channel.basic_publish("burrow.x.requests", "burrow.requests", b"forged"))
    assert "access to exchange 'burrow.x.requests'" in error.reply_text and f"user '{users.consumer[0]}'" in error.reply_text


def test_consumer_user_cannot_read_reply_queues_nor_use_other_names(users):
    producer = Producer(users.config(users.producer)).start()
    try:
        assert producer.wait_ready(30)
        reply_queue = producer.reply_queue
        refused(lambda: users.channel(users.consumer).basic_consume(reply_queue, lambda *_: None))
    finally:
        producer.stop(timeout=0)
    refused(lambda: users.channel(users.consumer).queue_declare("something.else"))
    refused(lambda: users.channel(users.producer).exchange_declare("other.exchange", "fanout"))


@pytest.fixture(scope="module")
def service_users(broker) -> Iterator[dict[str, Users]]:
    """One consumer user per service (``alpha``, ``beta``), each granted what the group variables
    grant a consumer serving only that service, in a vhost of their own."""
    node: LocalBroker = broker.local
    tag = uuid.uuid4().hex[:6]
    vhost = f"burrow-lps-{tag}"
    node.ctl("add_vhost", vhost)
    made: dict[str, Users] = {}
    for service in ("alpha", "beta"):
        account = (f"consumer-{service}-{tag}", uuid.uuid4().hex)
        node.ctl("add_user", *account)
        node.ctl("set_permissions", "-p", vhost, account[0], *permissions((service,))["consumer"])
        made[service] = Users(vhost, account, account, account, node)
    try:
        yield made
    finally:
        for users_of in made.values():
            node.ctl("delete_user", users_of.consumer[0], check=False)
        node.ctl("delete_vhost", vhost, check=False)


def test_consumer_user_of_one_service_cannot_read_another_services_queue(service_users):
    alpha, beta = service_users["alpha"], service_users["beta"]
    consumers = []
    try:
        for name, users_of in (("alpha", alpha), ("beta", beta)):
            config = dataclasses.replace(users_of.config(users_of.consumer), consumer=ConsumerConfig(
                concurrency=1,
                services={"default": ServiceConfig(handler="burrow.handlers:echo"),
                          name: ServiceConfig(handler="burrow.handlers:echo")}))
            consumers.append(Consumer(config).start())
            assert consumers[-1].wait_ready(30), f"the consumer user of {name} lacks a permission its service needs"
    finally:
        for consumer in consumers:
            consumer.stop(timeout=5)
    error = refused(lambda: alpha.channel(alpha.consumer).basic_get("burrow.requests.beta"))
    assert "access to queue 'burrow.requests.beta'" in error.reply_text, error.reply_text
    refused(lambda: beta.channel(beta.consumer).basic_get("burrow.requests.alpha"))
    assert alpha.channel(alpha.consumer).basic_get("burrow.requests.alpha") == (None, None, None)


def test_consumer_user_of_a_split_service_reads_its_partitions_and_no_other_users_do(service_users):
    """The group variables let a consumer declare its split service's consistent-hash exchange and
    partition queues; the consumer user of another service can read none of them nor bind to it."""
    alpha, beta = service_users["alpha"], service_users["beta"]
    config = dataclasses.replace(alpha.config(alpha.consumer), consumer=ConsumerConfig(
        concurrency=1, services={"alpha": ServiceConfig(handler="burrow.handlers:echo", partitions=2)}))
    consumer = Consumer(config).start()
    try:
        assert consumer.wait_ready(30), "the consumer user of a split service lacks a permission its partitions need"
    finally:
        consumer.stop(timeout=5)
    assert alpha.channel(alpha.consumer).basic_get("burrow.requests.alpha.1") == (None, None, None)
    error = refused(lambda: beta.channel(beta.consumer).basic_get("burrow.requests.alpha.0"))
    assert "access to queue 'burrow.requests.alpha.0'" in error.reply_text, error.reply_text
    refused(lambda: beta.channel(beta.consumer).queue_bind("burrow.requests.beta", "burrow.x.requests.alpha", "1"))
