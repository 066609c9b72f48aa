"""Fault scenarios under a steady load, counted by request id like Jepsen's queue checker (see
faultcheck.py).

Every test runs a bounded load (1,000-3,000 requests, each phase with a deadline) through a real
producer and consumer on the suite's own RabbitMQ node (one node for the whole session, its queues
named per test), breaks one thing mid-load, lets it recover, and then requires every request
answered with its own reply, and every handler run after a request's first explained by that
request's ``redelivered`` flag or a recorded republish of it. The core scenarios also run with
direct reply-to (``-direct``) and on a classic request queue (``-classic``); the consumer SIGKILL and
broker outage scenarios also with an ``async def`` handler on the consumer's event loop (``-async``).
The tallies go to docs/reliability/ and from there to docs/reliability.md.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pika
import pytest

from burrow.config import BurrowConfig
from burrow.errors import DeliveryLimitExceeded
from burrow.topology import reply_queue_name

from explain import explain
from faultcheck import (
    HandlerLog,
    Outcome,
    Tally,
    begin_scenario,
    close_connections,
    count,
    expected_reply,
    finish_scenario,
    republished,  # noqa: F401 - a fixture
    wait_for,
)
from loads import Load
from processes import write_config
from tcpproxy import TcpProxy

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

FAULTS_DIR = Path(__file__).resolve().parent
SUPPORT_DIR = FAULTS_DIR.parent / "support"
#: The variants the core scenarios run in: config overrides, and the suffix of the scenario name.
MODES: dict[str, dict[str, dict[str, Any]]] = {
    "quorum": {},
    "direct": {"producer": {"reply_mode": "direct"}},
    "classic": {"topology": {"queue_type": "classic"}},
}
mode_param = pytest.mark.parametrize("mode", list(MODES))
#: The quorum setup with an ``async def`` handler (its requests awaited on the consumer's event
#: loop, not run in worker threads), for the scenarios that kill what holds requests in handlers.
ASYNC = "async"
handler_mode_param = pytest.mark.parametrize("mode", [*MODES, ASYNC])
#: The count bound of a load that the test stops once it has seen enough after its fault.
OPEN_ENDED = 20000


def mode_config(make_config: Callable[..., BurrowConfig], mode: str, **sections: dict[str, Any]) -> BurrowConfig:
    """``make_config`` with the mode's overrides merged into the test's own sections."""
    merged = {name: dict(values) for name, values in sections.items()}
    for name, values in MODES.get(mode, {}).items():
        merged.setdefault(name, {}).update(values)
    return make_config(**merged)


def scenario_name(base: str, mode: str) -> str:
    return base if mode == "quorum" else f"{base}-{mode}"


def mode_title(title: str, mode: str) -> str:
    return title + {"quorum": "", "direct": " (direct reply-to)", "classic": " (classic queue)",
                    ASYNC: " (async handler)"}[mode]


@handler_mode_param
def test_consumer_sigkill_mid_load_restarted(request, mode, make_config, consumer_process, start_producer, republished, tmp_path, monkeypatch):
    run = begin_scenario(request, scenario_name("consumer-sigkill", mode),
                         mode_title("Consumer SIGKILL mid-load, restarted", mode))
    log = HandlerLog(tmp_path / "handled.txt")
    monkeypatch.setenv("BURROW_TEST_RECORD", str(log.path))
    # Both handlers record and echo like "record", and take 0.3 s for "slow:" bodies.
    handler = "burrow_test_async_handlers:record_slow" if mode == ASYNC else "burrow_test_handlers:poison"
    config = mode_config(make_config, mode, consumer={"handler": handler, "concurrency": 4})
    first = consumer_process(config, "first").start()
    first.wait_ready()
    producer = start_producer(config)
    load = Load(producer, 2000, prefix="kill", rate=400).start()
    load.wait_answered(400, 30)
    # A few slow requests beside the load, so the consumer surely holds some when it is killed.
    held = Load(producer, 8, prefix="slow:held", rate=100).start()
    wait_for(lambda: len(held.futures) == 8, 10, "the slow requests submitted")
    time.sleep(0.15)  # the fault itself: kill while the slow ones are in their handlers
    first.kill()
    killed_at = load.answered()
    second = consumer_process(config, "second").start()
    second.wait_ready()
    load.finish(120)
    held.finish(60)
    tally = load.tally(run, log, republished, extra_loads=[held])
    tally.notes["answered_when_killed"] = killed_at
    finish_scenario(request, tally)
    assert killed_at < 2000, "the load finished before the kill; the test proved nothing"
    assert tally.redelivered_flagged >= 1, "the killed consumer held no unacked request"


def test_three_consumers_two_killed_in_turn(request, make_config, consumer_process, start_producer, republished, tmp_path, monkeypatch):
    run = begin_scenario(request, "three-consumers", "Three consumer processes on one queue, two SIGKILLed in turn")
    log = HandlerLog(tmp_path / "handled.txt")
    monkeypatch.setenv("BURROW_TEST_RECORD", str(log.path))
    # The poison handler records and echoes like "record", and takes 0.3 s for "slow:" bodies.
    config = make_config(consumer={"handler": "burrow_test_handlers:poison", "concurrency": 2})
    consumers = [consumer_process(config, f"c{n}").start() for n in range(3)]
    for consumer in consumers:
        consumer.wait_ready()
    producer = start_producer(config)
    load = Load(producer, 3000, prefix="three", rate=400).start()
    held: list[Load] = []

    def hold_some(prefix: str) -> None:
        """16 slow requests beside the load, spread over the consumers, so that the one about to be
        killed surely holds some in its handlers (the fast load alone often leaves it holding none)."""
        slow = Load(producer, 16, prefix=f"slow:{prefix}", rate=200).start()
        wait_for(lambda: len(slow.futures) == 16, 10, "the slow requests submitted")
        time.sleep(0.15)  # the fault itself: kill while the slow ones are in their handlers
        held.append(slow)

    load.wait_answered(600, 30)
    hold_some("held1")
    consumers[0].kill()
    first_kill = load.answered()
    load.wait_answered(first_kill + 600, 60)
    hold_some("held2")
    consumers[1].kill()
    second_kill = load.answered()
    load.finish(120)
    for slow in held:
        slow.finish(60)
    runs_by_survivor = len(log.runs())
    tally = load.tally(run, log, republished, extra_loads=held)
    tally.notes.update(answered_at_first_kill=first_kill, answered_at_second_kill=second_kill)
    finish_scenario(request, tally)
    assert second_kill < 3000, "the load finished before the second kill; the test proved nothing"
    assert consumers[2].process.poll() is None, "the surviving consumer died"
    assert tally.redelivered_flagged >= 2, "each killed consumer held unacked requests that came back flagged"
    assert runs_by_survivor >= 3000


@handler_mode_param
@pytest.mark.parametrize("fault", ["restart", "crash"])
def test_broker_outage_mid_load(request, fault, mode, make_config, local_broker, start_consumer, start_producer, republished):
    """``restart``: ``rabbitmqctl stop`` then start; ``crash``: SIGKILL of the node, then start on
    the same data."""
    title = "Broker SIGKILL mid-load, restarted on the same data" if fault == "crash" else "Broker stop + start mid-load"
    run = begin_scenario(request, scenario_name(f"broker-{fault}", mode), mode_title(title, mode))
    log = HandlerLog()
    config = mode_config(make_config, mode, rabbitmq={"heartbeat": 5})
    handler = log.async_handler(delay=0.002) if mode == ASYNC else log.handler(delay=0.002)
    consumer = start_consumer(config, handler=handler)
    producer = start_producer(config)
    # Runs until 300 answers after the outage (rabbitmqctl alone takes seconds on a busy host).
    load = Load(producer, OPEN_ENDED, prefix=fault, rate=300).start()
    load.wait_answered(300, 30)
    if fault == "crash":
        local_broker.crash()
    else:
        local_broker.stop()
    down_at = load.answered()
    local_broker.start()
    wait_for(lambda: producer.connected and consumer.connected, 60, "producer and consumer reconnected")
    load.wait_answered(down_at + 300, 90)
    load.stop()
    load.finish(120)
    tally = load.tally(run, log, republished)
    tally.notes.update(answered_when_down=down_at, consumer_reconnects=consumer.reconnects,
                       dead_lettered=dead_letter_depth(local_broker.amqp_url, config))
    finish_scenario(request, tally)
    assert tally.reconnects >= 1 and consumer.reconnects >= 1


def dead_letter_depth(amqp_url: str, config: BurrowConfig) -> int:
    """Requests in the test's dead-letter queue, asked on a connection of its own (the suite's
    inspection channel died with the broker): a request that went there unanswered says so."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return connection.channel().queue_declare(config.topology.dead_letter_queue, passive=True).method.message_count
    finally:
        connection.close()


def child_records(outcome: Path) -> tuple[list[str], set[str], dict[str, bytes]]:
    """What producer_child.py wrote as the caller: bodies in submit order, the bodies the broker
    confirmed, and each reply it got."""
    submitted: list[str] = []
    confirmed: set[str] = set()
    answered: dict[str, bytes] = {}
    if outcome.exists():
        for line in outcome.read_text().splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "submitting":
                submitted.append(rest)
            elif kind == "confirmed":
                confirmed.add(rest)
            elif kind == "answered":
                body, _, reply = rest.partition(" ")
                answered[body] = bytes.fromhex(reply)
    return submitted, confirmed, answered


def first_instance_outcome(body: str, confirmed: set[str], answered: dict[str, bytes], waiting: dict[str, bytes],
                           correlation_id: str | None) -> Outcome:
    """What became of one request of the killed instance: ``answered`` to the caller that sent it,
    its reply ``recovered`` from the old instance's reply queue, ``died-with-caller`` (the broker
    never confirmed it, and it never ran), or ``lost`` (confirmed or run, and no reply anywhere)."""
    said = "confirmed by the broker" if body in confirmed else "never confirmed by the broker"
    if body in answered:
        reply, result, where = answered[body], "answered", "answered to its caller"
    elif correlation_id is not None and correlation_id in waiting:
        reply, result, where = waiting[correlation_id], "recovered", "reply waiting in the old instance's queue"
    elif correlation_id is None:
        return Outcome(body.encode(), "died-with-caller" if body not in confirmed else "lost", 0,
                       f"never ran; {said}")
    else:
        return Outcome(body.encode(), "lost", 0, f"ran, reply neither received nor waiting; {said}")
    if reply != expected_reply(body.encode()):
        return Outcome(body.encode(), "unexpected", detail=f"{where}: got {reply[:60]!r}")
    return Outcome(body.encode(), result, detail=where)


def peek_replies(connection: Any, queue: str) -> dict[str, bytes]:
    """Every reply waiting in ``queue`` by correlation id, consumed without an ack on a channel of
    its own whose close puts them back (a quorum reply queue with a single active consumer refuses
    basic.get)."""
    channel = connection.channel()
    replies: dict[str, bytes] = {}
    try:
        for method, properties, body in channel.consume(queue, inactivity_timeout=2):
            if method is None:
                break
            replies[properties.correlation_id] = body
    finally:
        channel.close()
    return replies


def test_producer_process_restart_with_requests_in_flight(request, make_config, start_consumer, start_producer, amqp, tmp_path, caplog):
    """Counted from the callers' side: the killed instance's callers are gone, so a reply of theirs
    recovered from its reply queue is not "answered"; a request that got neither is explained only
    when the broker never confirmed it (it died with its caller)."""
    run = begin_scenario(request, "producer-restart", "Producer process SIGKILL with requests in flight, restarted")
    log = HandlerLog()
    instance = f"restart-{uuid.uuid4().hex[:6]}"
    config = make_config(producer={"instance_id": instance}, consumer={"concurrency": 2})
    consumer = start_consumer(config, handler=log.handler(delay=0.004))
    config_path = write_config(config, tmp_path / "producer.toml")
    outcome = tmp_path / "first-instance.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FAULTS_DIR), str(SUPPORT_DIR), os.environ.get("PYTHONPATH", "")]))
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, str(FAULTS_DIR / "producer_child.py"), str(config_path), "1000", str(outcome)],
                             env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "child.log", "wb"))
    try:
        wait_for(lambda: len(child_records(outcome)[2]) >= 200, 60, "the first instance to get 200 answers")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    submitted, confirmed, answered_first = child_records(outcome)
    assert len(answered_first) < len(submitted), "the first instance had nothing in flight when it was killed"
    # Let the consumer finish everything the first instance had queued, then look at the replies
    # that wait for the dead instance, from outside it.
    wait_for(lambda: amqp.queue_declare(config.topology.request_queue, passive=True).method.message_count == 0
             and consumer.in_flight == 0, 60, "request queue drained")
    reply_queue = reply_queue_name(config.topology, instance, config.rabbitmq)
    waiting = peek_replies(amqp.connection, reply_queue)
    runs = log.runs()
    correlation_of = {handled.body.decode(): handled.correlation_id for handled in runs}
    first = [first_instance_outcome(body, confirmed, answered_first, waiting, correlation_of.get(body)) for body in submitted]
    caplog.set_level(logging.WARNING, logger="burrow.producer")
    second = start_producer(config)
    wait_for(lambda: second.stats().orphaned_replies == len(waiting), 30, f"{len(waiting)} orphaned replies counted")
    load = Load(second, 1000, prefix="after-restart", rate=500).start()
    load.finish(60)
    tally = Tally(run.scenario, run.title, recovered_from_queue=0, died_with_caller=0)
    outcomes, tally.non_answers = explain(first + load.outcomes(), {handled.body for handled in log.runs()}, None, None)
    count(tally, outcomes, log.runs())
    tally.duration_s = round(time.monotonic() - started, 1)
    tally.notes.update(first_submitted=len(submitted), first_confirmed=len(confirmed & set(submitted)),
                       first_answered=len(answered_first), replies_waiting=len(waiting))
    finish_scenario(request, tally)
    # Each waiting reply is dropped as orphaned by the new instance, logged with its id, never
    # handed to a caller.
    logged = {getattr(r, "CORRELATION_ID", None) for r in caplog.records
              if r.name == "burrow.producer" and "orphaned reply" in r.getMessage()}
    assert logged == set(waiting), "each orphaned reply is logged with its correlation id"
    assert tally.died_with_caller < 1000 - len(answered_first)
    amqp.queue_delete(queue=reply_queue)


@mode_param
def test_close_connection_on_each_side(request, mode, make_config, local_broker, start_consumer, start_producer, republished, amqp):
    run = begin_scenario(request, scenario_name("close-connection", mode),
                         mode_title("rabbitmqctl close_connection: producer, consumer, then both", mode))
    log = HandlerLog()
    tag = uuid.uuid4().hex[:6]
    consumer_config = mode_config(make_config, mode, rabbitmq={"connection_name": f"fault-consumer-{tag}"})
    producer_config = mode_config(make_config, mode, rabbitmq={"connection_name": f"fault-producer-{tag}"})
    consumer = start_consumer(consumer_config, handler=log.handler())
    producer = start_producer(producer_config)
    load = Load(producer, 2500, prefix="close", rate=2000, window=1000, timeout=40).start()
    load.wait_answered(300, 30)
    close_connections(local_broker, f"fault-producer-{tag}", 1)
    load.wait_answered(900, 60)
    close_connections(local_broker, f"fault-consumer-{tag}", 2)
    load.wait_answered(1500, 60)
    close_connections(local_broker, f"fault-producer-{tag}", 1)
    close_connections(local_broker, f"fault-consumer-{tag}", 2)
    load.finish(70)
    tally = load.tally(run, log, republished)
    tally.notes.update(consumer_reconnects=consumer.reconnects,
                       dead_lettered=amqp.queue_declare(producer_config.topology.dead_letter_queue, passive=True).method.message_count)
    finish_scenario(request, tally)
    assert producer.reconnects >= 2 and consumer.reconnects >= 4


def test_memory_alarm_blocks_then_recovers(request, make_config, local_broker, start_consumer, start_producer, republished):
    run = begin_scenario(request, "memory-alarm", "Memory alarm (watermark 0, then 0.4) mid-load")
    log = HandlerLog()
    blocked_timeout = 3.0
    config = make_config(rabbitmq={"blocked_connection_timeout": blocked_timeout})
    start_consumer(config, handler=log.handler())
    producer = start_producer(config)
    # Runs until 300 answers after the alarm (so it is still publishing when the alarm starts).
    load = Load(producer, OPEN_ENDED, prefix="alarm", rate=300).start()
    probes: list[Load] = []
    raised = time.monotonic()
    try:
        load.wait_answered(300, 30)
        raised = time.monotonic()
        local_broker.set_memory_watermark(0)
        alarm_at = time.monotonic()
        # Requests of their own, so that the producer surely publishes on the blocked connection
        # (the broker blocks a connection at its first publish after the alarm): on a slow host the
        # load may have its whole window in flight by now, and then it submits nothing.
        probes.append(Load(producer, 10, prefix="alarm-probe", rate=100, window=10).start())
        wait_for(lambda: producer.reconnects >= 1, blocked_timeout + 10,
                 "the producer to give up a connection blocked longer than blocked_connection_timeout")
        gave_up_after = time.monotonic() - alarm_at
        during = load.answered()
        time.sleep(2.0)  # measure: with publishing blocked, nothing gets answered during the alarm
        stalled = load.answered() - during
    finally:
        local_broker.set_memory_watermark(0.4)
        # The alarm lasted at most this long (rabbitmqctl alone takes seconds on a busy host).
        alarm_s = time.monotonic() - raised
    load.wait_answered(during + stalled + 300, 90)
    load.stop()
    load.finish(120)
    for probe in probes:
        probe.finish(60)
    tally = load.tally(run, log, republished, extra_loads=probes)
    tally.notes.update(blocked_timeout=blocked_timeout, gave_up_after_s=round(gave_up_after, 1),
                       answered_during_alarm_2s=stalled, alarm_s=round(alarm_s, 1))
    finish_scenario(request, tally)
    assert gave_up_after <= blocked_timeout + 5, f"blocked for {gave_up_after:.1f}s"
    assert stalled <= 5, f"{stalled} answers while publishing was blocked: the alarm did not bite"
    # Every connection opened during the alarm is blocked at its first publish and given up after
    # blocked_connection_timeout, so the producer reconnects at most once per blocked_timeout of
    # alarm; a backoff that kept restarting at its initial delay would reconnect several times a
    # second. (The bound follows the alarm's length, which rabbitmqctl's speed decides.)
    limit = int(alarm_s / blocked_timeout) + 1
    assert producer.reconnects <= limit, f"{producer.reconnects} reconnects during a {alarm_s:.0f} s alarm (at most {limit})"


def test_tcp_proxy_cut_stall_reset(request, make_config, local_broker, start_consumer, start_producer, republished):
    heartbeat = 2
    stall = 4 * heartbeat  # the broker drops a peer after two missed heartbeats; pika after hb + 5 s
    run = begin_scenario(request, "tcp-proxy", f"TCP proxy: cut, stall {stall}s (heartbeat {heartbeat}s), reset")
    log = HandlerLog()
    with TcpProxy("127.0.0.1", local_broker.port) as proxy:
        config = make_config(rabbitmq={"port": proxy.port, "heartbeat": heartbeat, "socket_timeout": 3.0})
        consumer = start_consumer(config, handler=log.handler())
        producer = start_producer(config)
        load = Load(producer, 3000, prefix="proxy", rate=300).start()
        load.wait_answered(300, 30)
        cut = proxy.cut()
        load.wait_answered(900, 60)
        reconnects = producer.reconnects + consumer.reconnects
        proxy.stall(stall)
        load.wait_answered(1500, 60)
        stall_reconnects = producer.reconnects + consumer.reconnects - reconnects
        reset = proxy.reset()
        load.finish(120)
        tally = load.tally(run, log, republished)
        tally.notes.update(consumer_reconnects=consumer.reconnects, proxy_connections=proxy.accepted,
                           connections_cut=cut, reconnects_after_stall=stall_reconnects, connections_reset=reset)
    finish_scenario(request, tally)
    assert cut == 3 and reset == 3, "each fault must hit the producer's and both consumer connections"
    assert stall_reconnects >= 1, "the stall went unnoticed"
    assert producer.reconnects >= 3 and consumer.reconnects >= 3


def test_broker_paused_shorter_and_longer_than_heartbeat(request, make_config, local_broker, start_consumer, start_producer, republished):
    heartbeat = 1
    # pika checks for traffic from the broker every heartbeat + 5 s and gives up after one silent
    # check, so a frozen broker is noticed after 6-12 s; the long pause must outlast that.
    short_pause, long_pause = heartbeat / 2, 2 * (heartbeat + 5) + 1
    run = begin_scenario(request, "broker-pause",
                         f"Broker SIGSTOP {short_pause:g}s, then {long_pause:g}s (heartbeat {heartbeat}s)")
    log = HandlerLog()
    config = make_config(rabbitmq={"heartbeat": heartbeat, "socket_timeout": 3.0})
    consumer = start_consumer(config, handler=log.handler())
    producer = start_producer(config)
    load = Load(producer, 2000, prefix="pause", rate=200).start()
    load.wait_answered(200, 30)
    reconnects_before = producer.reconnects + consumer.reconnects
    local_broker.pause()
    try:
        time.sleep(short_pause)  # the fault itself: a pause shorter than one heartbeat
    finally:
        local_broker.resume()
    load.wait_answered(500, 60)
    short_reconnects = producer.reconnects + consumer.reconnects - reconnects_before
    local_broker.pause()
    try:
        time.sleep(long_pause)  # the fault itself: longer than pika's heartbeat check
    finally:
        local_broker.resume()
    answered_at_resume = load.answered()
    load.finish(120)
    tally = load.tally(run, log, republished)
    tally.notes.update(reconnects_after_short_pause=short_reconnects, consumer_reconnects=consumer.reconnects,
                       answered_at_resume=answered_at_resume)
    finish_scenario(request, tally)
    assert short_reconnects == 0, "a pause shorter than the heartbeat must not drop connections"
    assert answered_at_resume < 2000, "the load finished during the pause; the test proved nothing"
    assert producer.reconnects >= 1 and consumer.reconnects >= 1, "the long pause went unnoticed"


def test_handler_longer_than_three_heartbeats_under_load(request, make_config, start_consumer, start_producer, republished):
    run = begin_scenario(request, "long-handler", "Handlers running 3.5s (> 3 heartbeats of 1s) beside a short-request load")
    log = HandlerLog()
    slow = log.handler()

    def handler(body, context):
        if body.startswith(b"long"):
            time.sleep(3.5)
        return slow(body, context)

    config = make_config(rabbitmq={"heartbeat": 1}, consumer={"concurrency": 8})
    consumer = start_consumer(config, handler=handler)
    producer = start_producer(config)
    long_load = Load(producer, 6, prefix="long", rate=100).start()
    load = Load(producer, 1000, prefix="short", rate=200).start()
    load.finish(60)
    long_load.finish(30)
    tally = load.tally(run, log, republished, extra_loads=[long_load])
    tally.notes["consumer_reconnects"] = consumer.reconnects
    finish_scenario(request, tally)
    assert consumer.reconnects == 0 and producer.reconnects == 0
    assert tally.handler_runs == 1006, "each request must run exactly once"


def test_poison_message_kills_every_consumer_until_dead_lettered(request, make_config, consumer_process, start_producer, republished, amqp, tmp_path, monkeypatch):
    limit = 2
    run = begin_scenario(request, "poison", f"Poison request that kills the consumer process (delivery limit {limit})")
    log = HandlerLog(tmp_path / "handled.txt")
    monkeypatch.setenv("BURROW_TEST_RECORD", str(log.path))
    # The default window (8 x 4 workers): a crash raises the delivery count of every request the
    # consumer held, but the next consumer takes redeliveries one at a time, so only the poison's
    # count keeps growing and the requests delivered beside it are answered.
    config = make_config(consumer={"handler": "burrow_test_handlers:poison", "concurrency": 4},
                         topology={"delivery_limit": limit})
    producer = start_producer(config)
    load = Load(producer, 1000, prefix="beside-poison", rate=400).start()
    time.sleep(0.2)  # the fault itself: the poison lands among the first requests of the load
    poison = producer.submit(b"poison", timeout=120)
    dead = lambda: amqp.queue_declare(config.topology.dead_letter_queue, passive=True).method.message_count  # noqa: E731
    crashes = 0
    proc = consumer_process(config, "c0").start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (load.answered() < 1000 or proc.process.poll() is not None):
        if proc.process.poll() is not None:  # like systemd's Restart=on-failure
            crashes += 1
            proc = consumer_process(config, f"c{crashes}").start()
        time.sleep(0.05)
    load.finish(30)
    wait_for(lambda: dead() == 1, 10, "the poison request dead-lettered")
    tally = load.tally(run, log, republished)
    poison_hits = log.path.read_text().count("poison-hit")
    tally.notes.update(consumer_crashes=crashes, poison_runs=poison_hits, dead_lettered=dead())
    finish_scenario(request, tally)
    assert poison_hits == limit + 1 and crashes == limit + 1
    assert proc.process.poll() is None
    # The surviving consumer's dead-letter watcher told the poison's caller, long before its 120 s.
    assert isinstance(poison.exception(timeout=30), DeliveryLimitExceeded)
    _method, _properties, body = amqp.basic_get(config.topology.dead_letter_queue, auto_ack=True)
    assert body == b"poison"
