"""Which broker node each connection uses, and its failovers: the STATUS words and the metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from burrow import metrics
from burrow.daemon import prometheus
from burrow.amqp.setup import BrokerLink
from burrow.daemon.notify import broker_status
from burrow.config import BrokerNode

B1, B2, B3 = BrokerNode("b1", 5672), BrokerNode("b2", 5672), BrokerNode("fd00::3", 5671)


@pytest.mark.parametrize(
    "links, text",
    [
        ([BrokerLink("producer", B1, True, 0)], "broker b1:5672 connected"),
        ([BrokerLink("producer", B2, True, 1)], "broker b2:5672 connected, 1 failover"),
        ([BrokerLink("consumer-consume", B1, True, 0), BrokerLink("consumer-publish", B1, True, 0)],
         "broker b1:5672 connected"),
        ([BrokerLink("consumer-consume", B1, True, 2), BrokerLink("consumer-publish", B3, True, 1)],
         "broker b1:5672 connected (also [fd00::3]:5671), 3 failovers"),
        ([BrokerLink("consumer-consume", B1, True, 0), BrokerLink("consumer-publish", B2, False, 0)],
         "waiting for broker b2:5672 (retrying with backoff)"),
        ([BrokerLink("producer", B3, False, 2)], "waiting for broker [fd00::3]:5671 (retrying with backoff, 2 failovers)"),
    ],
)
def test_status_names_the_nodes_and_counts_failovers(links: list[BrokerLink], text: str) -> None:
    assert broker_status(links) == text


@pytest.fixture
def collectors() -> Iterator[prometheus.Metrics]:
    yield prometheus.enable("consumer")
    prometheus.disable()


def test_broker_info_follows_the_node_and_failovers_count(collectors: prometheus.Metrics) -> None:
    metrics.broker_node("consumer-consume", "b1:5672")
    metrics.broker_node("consumer-publish", "b1:5672")
    metrics.broker_failover("consumer-consume")
    metrics.broker_node("consumer-consume", "b2:5672")
    text = collectors.exposition().decode()
    assert 'burrow_broker_info{connection="consumer-consume",node="b2:5672"} 1.0' in text
    assert 'burrow_broker_info{connection="consumer-publish",node="b1:5672"} 1.0' in text
    assert 'connection="consumer-consume",node="b1:5672"' not in text
    assert 'burrow_broker_failovers_total{connection="consumer-consume"} 1.0' in text
