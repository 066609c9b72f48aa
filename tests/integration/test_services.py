"""Named services on a real broker: one consumer daemon serves several, one producer calls them all."""

from __future__ import annotations

import dataclasses
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from burrow import UnknownService, UnroutableError
from burrow.config import MetricsConfig, to_toml
from burrow.daemon.http import HttpApi
from burrow.services import queue_name
from burrow.tools.localbroker import free_port
from burrow.tools.sendclient import SendError, SocketClient
from burrow.topology import request_queue_arguments

from broker_helpers import queue_depth
from waiting import wait_for

SERVICES = {"upper": "burrow_test_handlers:upper", "reverse": "burrow_test_handlers:reverse"}


def test_one_daemon_serves_two_services_in_one_burst_of_10000(make_config, consumer_process, start_producer):
    """Every reply came from its service's handler and names its own request, counted per id."""
    config = make_config(services=SERVICES)
    daemon = consumer_process(config)
    daemon.start().wait_ready()
    producer = start_producer(config)
    sent = {}
    for i in range(10_000):
        service = "upper" if i % 2 else "reverse"
        body = f"req-{i}".encode()
        sent[i] = (service, body, producer.submit(body, service=service, timeout=120))
    wrong, answered = [], {"upper": 0, "reverse": 0}
    for i, (service, body, future) in sent.items():
        reply = future.result(timeout=180)
        made = b"upper:" + body.upper() if service == "upper" else b"reverse:" + body[::-1]
        if reply != made + b" " + future.correlation_id.encode():
            wrong.append((i, service, reply))
        else:
            answered[service] += 1
    assert wrong == [], f"{len(wrong)} replies from the wrong handler or for another request, e.g. {wrong[:3]}"
    assert answered == {"upper": 5000, "reverse": 5000}
    assert len({future.correlation_id for _s, _b, future in sent.values()}) == 10_000


def test_default_service_beside_named_ones(make_config, start_consumer, start_producer, amqp):
    """The service named ``default`` is the old queue, reached with service=None, beside a named one."""
    config = make_config(services={"default": "burrow.handlers:echo", "upper": SERVICES["upper"]})
    consumer = start_consumer(config)
    assert consumer.services == ["default", "upper"]
    producer = start_producer(config)
    assert producer.call(b"old", timeout=10) == b"Consumer processed: old"
    assert producer.call(b"x", service="upper", timeout=10).startswith(b"upper:X ")
    assert queue_depth(amqp, config.topology.request_queue) == 0
    assert queue_depth(amqp, queue_name(config.topology.request_queue, "upper")) == 0


def test_unknown_service_reaches_the_caller_in_under_a_second(make_config, start_consumer, start_producer):
    config = make_config(services={"upper": SERVICES["upper"]})
    start_consumer(config)
    producer = start_producer(config)
    started = time.monotonic()
    future = producer.submit(b"x", service="nosuch", timeout=30)
    error = future.exception(timeout=30)
    elapsed = time.monotonic() - started
    assert isinstance(error, UnknownService) and isinstance(error, UnroutableError), repr(error)
    assert error.service == "nosuch" and "nosuch" in str(error)
    assert elapsed < 1.0, f"UnknownService took {elapsed:.2f}s"
    with pytest.raises(ValueError, match="service name must be .*, got 'No.Such'"):
        producer.submit(b"x", service="No.Such")


def _p50(producer, service: str, count: int, threads: int = 4) -> float:
    """The median round trip of ``count`` calls to ``service`` from ``threads`` caller threads."""

    def one(i: int) -> float:
        started = time.monotonic()
        producer.call(f"f{i}".encode(), service=service, timeout=30)
        return time.monotonic() - started

    with ThreadPoolExecutor(threads) as pool:
        return statistics.median(pool.map(one, range(count)))


def test_a_slow_service_does_not_slow_a_fast_one_in_the_same_daemon(make_config, start_consumer, start_producer, amqp):
    """The fast service's median round trip with the slow one saturated (its workers asleep, its
    queue holding more) stays within 2x of its median alone."""
    config = make_config(services={"fast": SERVICES["upper"], "slow": "burrow_test_handlers:sleep_one_second"},
                         consumer={"concurrency": 4})
    start_consumer(config)
    producer = start_producer(config)
    _p50(producer, "fast", 50)  # warm up connections and windows
    alone = _p50(producer, "fast", 400)
    # 300 requests of one second on 4 workers: busy for over a minute, far longer than the fast
    # service needs for its calls; what is left is failed by the producer's stop at the end.
    slow = [producer.submit(f"s{i}".encode(), service="slow", timeout=300) for i in range(300)]
    wait_for(lambda: queue_depth(amqp, queue_name(config.topology.request_queue, "slow")) > 0, 10,
             "the slow service's backlog")
    beside = _p50(producer, "fast", 200)
    still_busy = sum(not future.done() for future in slow)
    print(f"fast p50: {alone * 1000:.1f} ms alone, {beside * 1000:.1f} ms beside the saturated slow service")
    assert beside <= 2 * alone, f"fast p50 {beside * 1000:.1f} ms beside the slow service, {alone * 1000:.1f} ms alone"
    assert still_busy > 0, "the slow service finished before the fast one was measured beside it"


def test_burrow_call_service_reaches_that_service_and_names_an_unknown_one(make_config, start_consumer, tmp_path):
    config = make_config(services={"reverse": SERVICES["reverse"]})
    start_consumer(config)
    path = tmp_path / "producer.toml"
    path.write_text(to_toml(config))
    burrow = Path(sys.executable).parent / "burrow"
    result = subprocess.run([str(burrow), "call", "--config", str(path), "--service", "reverse", "abc"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("reverse:cba "), result
    result = subprocess.run([str(burrow), "call", "--config", str(path), "--service", "nosuch", "abc"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr.startswith("error: UnknownService: unknown service 'nosuch'"), result


def test_a_service_queue_declared_with_another_leader_locator_is_used_as_it_is(make_config, start_consumer,
                                                                                 start_producer, amqp):
    """A queue that exists keeps its arguments (e.g. the locator value of the broker release that
    declared it): the broker refuses a redeclaration with another one, and the consumer would
    never become ready."""
    config = make_config(services={"upper": SERVICES["upper"]})
    queue = queue_name(config.topology.request_queue, "upper")
    amqp.queue_declare(queue, durable=True,
                       arguments={**request_queue_arguments(config.topology), "x-queue-leader-locator": "client-local"})
    start_consumer(config)
    producer = start_producer(config)
    assert producer.call(b"x", service="upper", timeout=10).startswith(b"upper:X ")


def test_http_api_posts_to_a_service_and_answers_404_for_an_unknown_one(make_config, start_consumer, start_producer,
                                                                         tmp_path):
    config = make_config(services={"upper": SERVICES["upper"]})
    start_consumer(config)
    api = HttpApi(start_producer(config), socket_path=str(tmp_path / "producer.sock"), max_body=1024,
                  default_timeout=10.0, socket_activation=False)
    api.start()
    try:
        reply = SocketClient(api.address, timeout=10, service="upper").send(b"abc")
        assert reply.startswith(b"upper:ABC "), reply
        started = time.monotonic()
        with pytest.raises(SendError) as caught:
            SocketClient(api.address, timeout=10, service="nosuch").send(b"abc")
        assert (caught.value.status, caught.value.code) == (404, "unknown_service"), caught.value
        assert time.monotonic() - started < 1.0
    finally:
        api.close()


def test_burrow_status_lists_each_service_with_its_backlog_and_consumers(make_config, consumer_process,
                                                                          start_producer):
    """A slow service with one worker and a window of one keeps a backlog that ``burrow status``
    reports from the consumer's metrics, beside the idle service."""
    config = dataclasses.replace(
        make_config(services={"upper": SERVICES["upper"], "slow": "burrow_test_handlers:sleep_one_second"},
                    consumer={"concurrency": 1, "prefetch": 1}),
        metrics=MetricsConfig(enabled=True, port=free_port()))
    daemon = consumer_process(config).start()
    daemon.wait_ready()
    producer = start_producer(config)
    backlog = [producer.submit(f"s{i}".encode(), service="slow", timeout=60) for i in range(8)]
    burrow = Path(sys.executable).parent / "burrow"

    def reported() -> bool:
        result = subprocess.run([str(burrow), "status", "consumer", "--consumer-config", str(daemon.config_path)],
                                capture_output=True, text=True, timeout=30)
        return result.returncode == 0 and re.search(r"services: upper 0 ready 1 consumer, slow [1-7] ready 1 consumer,",
                                                    result.stdout) is not None

    wait_for(reported, 20, "the services' backlog in burrow status")
    assert all(future.result(timeout=60) for future in backlog)


def test_broker_restart_with_requests_queued_for_two_services_loses_nothing(make_config, local_broker, start_consumer,
                                                                             start_producer, amqp):
    """Requests wait in both service queues through a broker restart; a consumer started after it
    answers each from its own service's handler, counted per id."""
    config = make_config(services=SERVICES, producer={"request_timeout": 120.0})
    start_consumer(config).stop(timeout=10)  # the service queues exist; nobody serves them now
    producer = start_producer(config)
    sent = {i: ("upper" if i % 2 else "reverse", producer.submit(f"q{i}".encode(), service="upper" if i % 2 else "reverse"))
            for i in range(200)}
    for service in SERVICES:
        wait_for(lambda: queue_depth(amqp, queue_name(config.topology.request_queue, service)) == 100, 30,
                 f"100 requests queued for {service}")
    amqp.connection.close()
    local_broker.stop()
    local_broker.start()
    wait_for(lambda: producer.connected, 60, "producer reconnected")
    start_consumer(config)
    for i, (service, future) in sent.items():
        body = f"q{i}".encode()
        made = b"upper:" + body.upper() if service == "upper" else b"reverse:" + body[::-1]
        assert future.result(timeout=60) == made + b" " + future.correlation_id.encode(), i
