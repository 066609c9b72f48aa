"""burrow and Node.js, both ways, on the wire contract of docs/asyncapi.yaml: the Node caller of
examples/node calls a burrow consumer daemon, a burrow Producer calls the Node worker (each for
the default service and for named ones), and a foreign caller that expects its reply through
the default exchange (RabbitMQ's RPC tutorial) is refused visibly. Every request is counted by
its id on the caller's side."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pika
import pytest

from burrow import tracing
from burrow.config import BurrowConfig, MetricsConfig, ProducerConfig, RabbitMQConfig, ServiceConfig
from burrow.deadletters import DeadLetterWatcher
from burrow.errors import RemoteError, RequestTimeout
from burrow.partitions import hash_exchange, partition_queues
from burrow.protocol import CONTENT_TYPE, HEADER_DEADLINE, request_deadline, validate_request
from burrow.services import DEFAULT_SERVICE
from burrow.topology import service_queue_steps
from burrow.tools.localbroker import free_port
from broker_helpers import partition_of_each_request, queue_depth, start_victims_until_dead_lettered
from broker_permissions import permissions
from waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "node"
REQUESTS = 100
#: The consumer's body limit in these tests: bodies over it are rejected ``too_large``.
MAX_BODY = 1024

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def node_env() -> dict[str, str]:
    """The environment for node: the pinned npm packages, installed once into the cache."""
    result = subprocess.run([str(REPO / "scripts" / "node-deps.sh")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return {**os.environ, "NODE_PATH": result.stdout.strip()}


def start_caller(node_env: dict[str, str], config: BurrowConfig, amqp_url: str, requests: list[dict[str, object]],
                 *args: str) -> subprocess.Popen[str]:
    """Start examples/node/caller.js and hand it ``requests`` (it sends them all at once)."""
    topology = config.topology
    command = ["node", "caller.js", "--url", amqp_url, "--exchange", topology.request_exchange,
               "--routing-key", topology.request_queue, "--reply-exchange", topology.reply_exchange, *args]
    process = subprocess.Popen(command, cwd=EXAMPLES, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=node_env)
    assert process.stdin is not None
    process.stdin.write("".join(json.dumps(request) + "\n" for request in requests))
    process.stdin.close()
    return process


def caller_results(process: subprocess.Popen[str], timeout: float = 120) -> dict[str, dict[str, str]]:
    """The caller's result for each request id, once it has ended them all (each id exactly once)."""
    assert process.stdout is not None and process.stderr is not None
    try:
        process.wait(timeout)
    finally:
        if process.poll() is None:
            process.kill()
    output, errors = process.stdout.read(), process.stderr.read()
    assert process.returncode == 0, errors
    results: dict[str, dict[str, str]] = {}
    for line in output.splitlines():
        answer = json.loads(line)
        assert answer["id"] not in results, f"request {answer['id']} ended twice"
        results[answer["id"]] = answer
    return results


def outcome(future: Future[bytes]) -> tuple[str, ...]:
    """How a Producer's request ended, comparable per id: ``("ok", reply)``, ``("error", type,
    message)``, ``("timeout",)`` or ``("other", repr)``."""
    error = future.exception(timeout=30)
    if error is None:
        return ("ok", future.result().decode())
    if isinstance(error, RemoteError):
        return ("error", error.type_name, error.message)
    return ("timeout",) if isinstance(error, RequestTimeout) else ("other", repr(error))


def assert_outcomes(futures: dict[str, Future[bytes]], expected: dict[str, tuple[str, ...]]) -> None:
    """Every request in ``expected`` ended as expected, each looked up by its id."""
    assert sorted(futures) == sorted(expected)
    ended = {request_id: outcome(future) for request_id, future in futures.items()}
    wrong = {request_id: got for request_id, got in ended.items() if got != expected[request_id]}
    assert not wrong, f"{len(wrong)} of {len(expected)} answered wrongly: {dict(list(wrong.items())[:5])}"


@pytest.fixture
def node_worker(node_env: dict[str, str], tmp_path: Path) -> Iterator:
    """Start examples/node/worker.js on a config's request queue, or with ``service`` on that named
    service's queue; stopped with SIGTERM at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(config: BurrowConfig, amqp_url: str, service: str | None = None) -> Path:
        log = tmp_path / f"node-worker-{len(started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["node", "worker.js", "--url", amqp_url, "--queue", config.topology.request_queue,
                 "--reply-exchange", config.topology.reply_exchange, *(["--service", service] if service else [])],
                cwd=EXAMPLES, stdout=out, stderr=subprocess.STDOUT, env=node_env)
        started.append(process)
        wait_for(lambda: "worker ready" in log.read_text() or process.poll() is not None, 30, "the Node worker ready")
        assert process.poll() is None, log.read_text()
        return log

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@pytest.mark.parametrize("reply", ["queue", "direct"])
def test_node_caller_gets_every_answer_of_a_burrow_consumer_daemon(reply, broker, make_config, consumer_process,
                                                                    node_env, amqp):
    """ok, error, rejected (too large) and timeout (past its deadline) replies, each for its own id."""
    config = make_config(consumer={"handler": "burrow_test_handlers:slow", "max_message_bytes": MAX_BODY})
    consumer_process(config).start().wait_ready()
    expected: dict[str, tuple[str, str]] = {}
    requests: list[dict[str, object]] = []
    for i in range(REQUESTS):
        request_id = f"r{i}"
        if i % 20 == 1:  # the handler raises: float() of a body that is no number
            body = f"error-{request_id}"
            expected[request_id] = ("error", f"could not convert string to float: b'{body}'")
        elif i % 20 == 2:  # burrow rejects it before any handler sees it
            body = f"{request_id}:" + "x" * MAX_BODY
            expected[request_id] = ("rejected", "too_large")
        elif i % 50 == 3:  # the handler takes 2 s, the caller waits 0.3 s: its deadline ends it
            body = f"2:{request_id}"
            expected[request_id] = ("timeout", "")
        else:
            body = f"0:{request_id}"
            expected[request_id] = ("ok", f"Consumer processed: {body}")
        requests.append({"id": request_id, "body": body, **({"timeout_ms": 300} if body.startswith("2:") else {})})
    reply_queue = f"{config.topology.reply_queue_prefix}.node-{uuid.uuid4().hex[:6]}"
    results = caller_results(start_caller(node_env, config, broker.amqp_url, requests, "--reply", reply,
                                          "--reply-queue", reply_queue, "--timeout-ms", "20000"))
    if reply == "queue":
        amqp.queue_delete(reply_queue)

    assert sorted(results) == sorted(expected), "a request had no result"
    wrong = {}
    for request_id, (status, detail) in expected.items():
        got = results[request_id]
        seen = {"ok": got.get("body"), "error": got.get("body"), "rejected": got.get("reason"), "timeout": ""}[status]
        if got["status"] != status or seen != detail or (status == "error" and got.get("errorType") != "ValueError"):
            wrong[request_id] = got
    assert not wrong, f"{len(wrong)} of {REQUESTS} answered wrongly: {dict(list(wrong.items())[:5])}"
    tally = {status: sum(1 for s, _ in expected.values() if s == status) for status in ("ok", "error", "rejected", "timeout")}
    assert tally == {"ok": 88, "error": 5, "rejected": 5, "timeout": 2}

    # The too-large requests stay in burrow.dead as the Node caller sent them: burrow reads them
    # as its own (their deadline an integer in the future, a valid traceparent, persistent).
    dead = config.topology.dead_letter_queue
    wait_for(lambda: queue_depth(amqp, dead) >= tally["rejected"], 10, "the rejected requests dead-lettered")
    sent = []
    while (message := amqp.basic_get(dead, auto_ack=True))[0] is not None:
        if len(message[2]) > MAX_BODY:
            sent.append(message[1])
    assert len(sent) == tally["rejected"]
    for properties in sent:
        assert validate_request(properties, b"", max_message_bytes=MAX_BODY, content_types=(CONTENT_TYPE,),
                                now=time.time()) is None, properties
        assert isinstance(properties.headers[HEADER_DEADLINE], int)
        assert time.time() < request_deadline(properties) <= time.time() + 20
        assert tracing.parse(properties.headers[tracing.HEADER]) is not None
        assert properties.delivery_mode == 2
        # Dead-lettering moves the expiration into the broker's x-death record.
        assert properties.headers["x-death"][0]["original-expiration"] in ("20000", b"20000")
        assert properties.message_id == properties.correlation_id


@pytest.mark.parametrize("reply_mode", ["queue", "direct"])
def test_burrow_producer_gets_every_answer_of_the_node_worker(reply_mode, broker, make_config, start_producer,
                                                               node_worker):
    """ok and error replies from the Node worker, and a timeout, each matched to its request."""
    config = make_config(producer={"reply_mode": reply_mode})
    producer = start_producer(config)  # declares burrow's topology, the request queue included
    node_worker(config, broker.amqp_url)
    futures = {}
    for i in range(REQUESTS):
        if i % 20 == 1:
            futures[f"r{i}"] = producer.submit(f"error:bad r{i}".encode(), timeout=20)
        elif i % 50 == 3:
            futures[f"r{i}"] = producer.submit(f"sleep:2000 r{i}".encode(), timeout=0.3)
        else:
            futures[f"r{i}"] = producer.submit(f"r{i}".encode(), timeout=20)
    expected = {}
    for request_id in futures:
        i = int(request_id[1:])
        expected[request_id] = (("error", "RangeError", f"bad {request_id}") if i % 20 == 1 else ("timeout",)
                                if i % 50 == 3 else ("ok", f"node worker: {request_id}"))
    assert_outcomes(futures, expected)


@pytest.mark.parametrize("reply", ["queue", "direct"])
def test_node_caller_calls_named_services_and_the_default_one_of_one_daemon(reply, broker, make_config,
                                                                            consumer_process, node_env, amqp):
    """One consumer daemon serves ``default`` and ``upper``; the Node caller reaches each by the
    document's routing key rule (no service and "default": the request queue's name; "upper": its
    name), and a service nobody serves comes back unroutable. Each reply names the handler that
    made it and, for ``upper``, the correlation id the caller sent."""
    config = make_config(services={DEFAULT_SERVICE: "burrow.handlers:echo", "upper": "burrow_test_handlers:upper"})
    consumer_process(config).start().wait_ready()
    services = [None, DEFAULT_SERVICE, "upper", "upper", "upper"]
    requests = [{"id": f"r{i}", "body": f"r{i}", **({"service": service} if (service := services[i % 5]) else {})}
                for i in range(REQUESTS)]
    requests += [{"id": f"nosuch{i}", "body": "x", "service": "nosuch"} for i in range(3)]
    reply_queue = f"{config.topology.reply_queue_prefix}.node-{uuid.uuid4().hex[:6]}"
    results = caller_results(start_caller(node_env, config, broker.amqp_url, requests, "--reply", reply,
                                          "--reply-queue", reply_queue, "--timeout-ms", "20000"))
    if reply == "queue":
        amqp.queue_delete(reply_queue)

    assert sorted(results) == sorted(request["id"] for request in requests), "a request had no result"
    wrong = {}
    for request in requests:
        got, body = results[request["id"]], str(request["body"])
        if request.get("service") == "upper":
            made = f"upper:{body.upper()} {got['correlationId']}"
        elif request.get("service") == "nosuch":
            made = None
        else:
            made = f"Consumer processed: {body}"
        if (got["status"], got.get("body") if made else None) != ("ok" if made else "unroutable", made):
            wrong[request["id"]] = got
    assert not wrong, f"{len(wrong)} of {len(requests)} answered wrongly: {dict(list(wrong.items())[:5])}"
    assert len({answer["correlationId"] for answer in results.values()}) == len(requests)
    assert sum(1 for request in requests if request.get("service") == "upper") == 60


def delete_partitions(broker, config: BurrowConfig, queues: list[str]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        channel = connection.channel()
        for queue in queues:
            channel.queue_delete(queue=queue)
        channel.exchange_delete(exchange=hash_exchange(config.topology, "hot"))
    finally:
        connection.close()


def test_node_caller_keys_keep_requests_on_one_partition_of_a_split_service(request, broker, make_config,
                                                                          start_consumer, node_env, amqp):
    """A service split over 4 queues: the Node caller publishes to it as to any service, with the
    document's x-burrow-key; requests with one key all wait in one partition, those without one
    spread, each in exactly one; then the service's consumer answers every one, counted by id."""
    config = make_config()
    config = dataclasses.replace(config, consumer=dataclasses.replace(
        config.consumer, services={"hot": ServiceConfig(handler="burrow_test_handlers:upper", partitions=4)}))
    queues = partition_queues(config.topology, "hot", 4)
    request.addfinalizer(lambda: delete_partitions(broker, config, queues))
    start_consumer(config).stop(timeout=10)  # its exchange and partitions exist; nobody serves them now
    requests = [{"id": f"k{k}-{i}", "body": f"k{k}-{i}", "service": "hot", "key": f"customer-{k}"}
                for i in range(10) for k in range(4)]
    requests += [{"id": f"r{i}", "body": f"r{i}", "service": "hot"} for i in range(40)]
    reply_queue = f"{config.topology.reply_queue_prefix}.node-{uuid.uuid4().hex[:6]}"
    caller = start_caller(node_env, config, broker.amqp_url, requests, "--reply-queue", reply_queue,
                          "--timeout-ms", "60000")
    wait_for(lambda: sum(queue_depth(amqp, queue) for queue in queues) == len(requests), 30,
             f"{len(requests)} requests in the partitions")
    inspect = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        found = partition_of_each_request(inspect.channel(), queues)
    finally:
        inspect.close()  # the requests go back to their partitions
    start_consumer(config)
    results = caller_results(caller)
    amqp.queue_delete(reply_queue)

    assert sorted(results) == sorted(request["id"] for request in requests), "a request had no result"
    wrong = {rid: got for rid, got in results.items()
             if (got["status"], got.get("body")) != ("ok", f"upper:{rid.upper()} {got['correlationId']}")}
    assert not wrong, f"{len(wrong)} of {len(requests)} answered wrongly: {dict(list(wrong.items())[:5])}"
    where = {rid: found[got["correlationId"]] for rid, got in results.items()}
    assert {rid: places for rid, places in where.items() if len(places) != 1} == {}, "not in exactly one partition"
    for rid, [(_partition, key)] in where.items():
        request_key = f"customer-{rid[1]}" if rid.startswith("k") else results[rid]["correlationId"]
        assert key == request_key, (rid, key)
    partitions_of_key = {k: {where[f"k{k}-{i}"][0][0] for i in range(10)} for k in range(4)}
    assert all(len(partitions) == 1 for partitions in partitions_of_key.values()), partitions_of_key
    assert len({where[f"r{i}"][0][0] for i in range(40)}) > 1, "every request without a key in one partition"


@pytest.mark.parametrize("reply_mode", ["queue", "direct"])
def test_burrow_producer_calls_a_named_service_the_node_worker_serves(reply_mode, broker, make_config, amqp,
                                                                     start_consumer, start_producer, node_worker):
    """The Node worker serves the named service ``nodework`` on its queue; a burrow consumer serves
    the default service. One Producer calls both: ``service="nodework"`` requests (ok, error and a
    timeout) are the Node worker's, the others burrow's, each matched to its request."""
    config = make_config(services={"nodework": "burrow_test_handlers:upper"}, producer={"reply_mode": reply_mode})
    producer = start_producer(config)
    for method, arguments in service_queue_steps(config.topology, "nodework", None):  # as a deployment declares it
        getattr(amqp, method)(**arguments)
    node_worker(config, broker.amqp_url, "nodework")
    start_consumer(dataclasses.replace(config, consumer=dataclasses.replace(config.consumer, services={})))
    futures = {}
    for i in range(REQUESTS):
        if i % 2:
            futures[f"d{i}"] = producer.submit(f"d{i}".encode(), timeout=20)
        elif i % 20 == 2:
            futures[f"e{i}"] = producer.submit(f"error:bad e{i}".encode(), service="nodework", timeout=20)
        elif i % 50 == 4:
            futures[f"t{i}"] = producer.submit(f"sleep:2000 t{i}".encode(), service="nodework", timeout=0.3)
        else:
            futures[f"n{i}"] = producer.submit(f"n{i}".encode(), service="nodework", timeout=20)
    assert_outcomes(futures, {request_id: {"d": ("ok", f"Consumer processed: {request_id}"),
                                           "e": ("error", "RangeError", f"bad {request_id}"),
                                           "t": ("timeout",),
                                           "n": ("ok", f"node worker: {request_id}")}[request_id[0]]
                              for request_id in futures})
    kinds = {kind: sum(1 for request_id in futures if request_id[0] == kind) for kind in "dent"}
    assert kinds == {"d": 50, "e": 5, "n": 43, "t": 2}


def test_a_dead_letter_notice_reaches_the_node_caller_as_a_rejected_reply(broker, make_config, consumer_process,
                                                                          node_env, amqp, tmp_path, monkeypatch):
    """A request that kills every consumer is dead-lettered by the broker at the delivery limit; the
    dead-letter watcher's notice reaches the Node caller as ``rejected``/``delivery_limit``, with
    the delivery count, while the caller still waits (the document's deadLetterNotice)."""
    monkeypatch.setenv("BURROW_TEST_RECORD", str(tmp_path / "record.txt"))
    config = make_config(consumer={"handler": "burrow_test_handlers:poison", "dead_letter_notices": False},
                         topology={"delivery_limit": 2})
    watcher = DeadLetterWatcher(config).start()  # declares the topology, then tells callers
    try:
        assert watcher.wait_ready(30)
        reply_queue = f"{config.topology.reply_queue_prefix}.node-{uuid.uuid4().hex[:6]}"
        caller = start_caller(node_env, config, broker.amqp_url, [{"id": "poison", "body": "poison"}],
                              "--reply-queue", reply_queue, "--timeout-ms", "90000")
        dead_letters = lambda: queue_depth(amqp, config.topology.dead_letter_queue)  # noqa: E731
        start_victims_until_dead_lettered(config, consumer_process, dead_letters)
        results = caller_results(caller)
        amqp.queue_delete(reply_queue)
    finally:
        watcher.stop()
    assert set(results) == {"poison"}
    answer = results["poison"]
    assert (answer["status"], answer["reason"]) == ("rejected", "delivery_limit"), answer
    assert "no consumer finished the request in 3 deliveries" in answer["body"]


def metric(port: int, name: str, reason: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{reason="{reason}"}} '):
            return float(line.split()[-1])
    raise AssertionError(f"{name}{{reason={reason!r}}} not exported:\n{text}")


def test_the_rpc_tutorial_pattern_is_refused_visibly(make_config, consumer_process, amqp):
    """reply_to = the caller's own queue, reply expected through the default exchange: no answer,
    but each request is dead-lettered by id, counted, and logged naming the pattern and the contract."""
    port = free_port()
    config = dataclasses.replace(make_config(), metrics=MetricsConfig(enabled=True, port=port))
    consumer = consumer_process(config).start()
    consumer.wait_ready()
    caller_queue = amqp.queue_declare("", exclusive=True).method.queue  # the tutorial's server-named queue
    sent = {f"tutorial-{i}" for i in range(REQUESTS)}
    for correlation_id in sorted(sent):
        amqp.basic_publish(config.topology.request_exchange, config.topology.request_queue, b"question",
                           pika.BasicProperties(correlation_id=correlation_id, reply_to=caller_queue))
    dead = config.topology.dead_letter_queue
    wait_for(lambda: queue_depth(amqp, dead) == REQUESTS, 60, f"{REQUESTS} requests dead-lettered")

    dead_ids = set()
    for _ in range(REQUESTS):
        _method, properties, _body = amqp.basic_get(dead, auto_ack=True)
        assert properties.headers["x-first-death-reason"] == "rejected"
        dead_ids.add(properties.correlation_id)
    assert dead_ids == sent
    assert queue_depth(amqp, caller_queue) == 0, "a reply reached the default-exchange caller"
    assert metric(port, "burrow_consumer_dead_lettered_total", "reply_via_default_exchange") == REQUESTS
    assert metric(port, "burrow_consumer_dead_lettered_total", "reply_unroutable") == 0
    lines = [line for line in consumer.log().splitlines() if "Dead-lettering request" in line]
    assert len(lines) == REQUESTS, consumer.log()[-2000:]
    assert all("default exchange" in line and "RPC tutorial" in line and "docs/asyncapi.yaml" in line for line in lines)


@pytest.fixture
def deployed_users(broker) -> Iterator[tuple[str, dict[str, tuple[str, str]]]]:
    """A fresh virtual host with a producer and a consumer user granted exactly what the Ansible
    roles grant (ansible/group_vars/brokers/burrow.yml): ``(vhost, {role: (user, password)})``."""
    node = broker.local
    if node is None:
        pytest.skip("creates users and a virtual host with rabbitmqctl: needs the suite's own node, not AMQP_URL")
    tag = uuid.uuid4().hex[:6]
    vhost = f"burrow-node-{tag}"
    accounts = {role: (f"node-{role}-{tag}", uuid.uuid4().hex) for role in ("producer", "consumer")}
    node.ctl("add_vhost", vhost)
    try:
        for role, (name, password) in accounts.items():
            node.ctl("add_user", name, password)
            node.ctl("set_permissions", "-p", vhost, name, *permissions()[role])
        yield vhost, accounts
    finally:
        for name, _password in accounts.values():
            node.ctl("delete_user", name, check=False)
        node.ctl("delete_vhost", vhost, check=False)


def test_node_caller_and_worker_need_no_more_than_the_deployed_permissions(broker, deployed_users, node_env,
                                                                         node_worker, start_consumer, start_producer):
    """With the deployment's least-privilege users and burrow's default names: the Node caller with
    the producer's user and a burrow.replies.* queue calls a burrow consumer, and the Node worker
    with the consumer's user answers a burrow producer, 100 requests each, by id."""
    vhost, accounts = deployed_users
    port = urllib.parse.urlsplit(broker.amqp_url).port

    def config(role: str) -> BurrowConfig:
        user, password = accounts[role]
        rabbitmq = RabbitMQConfig(host="127.0.0.1", port=port, virtual_host=vhost, username=user, password=password,
                                  reconnect_initial_delay=0.2, reconnect_max_delay=1.0)
        return BurrowConfig(rabbitmq=rabbitmq, producer=ProducerConfig(instance_id=f"p-{uuid.uuid4().hex[:6]}"))

    def url(role: str) -> str:
        user, password = accounts[role]
        return f"amqp://{user}:{password}@127.0.0.1:{port}/{urllib.parse.quote(vhost, safe='')}"

    consumer = start_consumer(config("consumer"))
    requests = [{"id": f"r{i}", "body": f"r{i}"} for i in range(REQUESTS)]
    results = caller_results(start_caller(node_env, config("producer"), url("producer"), requests))
    assert {request_id: (answer["status"], answer["body"]) for request_id, answer in results.items()} == {
        f"r{i}": ("ok", f"Consumer processed: r{i}") for i in range(REQUESTS)}
    consumer.stop(timeout=10)

    producer = start_producer(config("producer"))
    node_worker(config("consumer"), url("consumer"))
    futures = {f"r{i}": producer.submit(f"r{i}".encode(), timeout=20) for i in range(REQUESTS)}
    answers = {request_id: future.result(timeout=30) for request_id, future in futures.items()}
    assert answers == {f"r{i}": f"node worker: r{i}".encode() for i in range(REQUESTS)}
