"""Fault scenarios under a steady load, counted like Jepsen's queue checker (see faultcheck.py).

Every test runs a bounded load (1,000-3,000 requests, each phase with a deadline) through a real
producer and consumer on the suite's own RabbitMQ node, breaks one thing mid-load, lets it recover,
and then requires 0 lost, 0 failed, 0 duplicated to the caller, 0 unexpected replies and every
redelivery flagged. The counts of the last run go to docs/reliability.md.
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

import pytest

from burrow.config import to_toml
from burrow.errors import DeliveryLimitExceeded
from burrow.topology import reply_queue_name

from faultcheck import (
    HandlerLog,
    Load,
    close_connections,
    counting_producer,  # noqa: F401 - a fixture
    finish_scenario,
    wait_for,
)
from tcpproxy import TcpProxy

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]

FAULTS_DIR = Path(__file__).resolve().parent
SUPPORT_DIR = FAULTS_DIR.parent / "support"


def test_consumer_sigkill_mid_load_restarted(request, make_config, consumer_process, counting_producer, tmp_path, monkeypatch):
    log = HandlerLog(tmp_path / "handled.txt")
    monkeypatch.setenv("BURROW_TEST_RECORD", str(log.path))
    config = make_config(consumer={"handler": "burrow_test_handlers:record", "concurrency": 4})
    first = consumer_process(config, "first").start()
    first.wait_ready()
    producer = counting_producer(config)
    load = Load(producer, 2000, prefix="kill", rate=400).start()
    load.wait_answered(400, 30)
    first.kill()
    killed_at = load.answered()
    second = consumer_process(config, "second").start()
    second.wait_ready()
    load.finish(120)
    tally = load.tally("consumer-sigkill", "Consumer SIGKILL mid-load, restarted", log)
    tally.notes["answered_when_killed"] = killed_at
    finish_scenario(request, tally)
    assert killed_at < 2000, "the load finished before the kill; the test proved nothing"
    assert tally.redelivered_flagged >= 1, "the killed consumer held no unacked request"


def test_broker_restart_mid_load(request, make_config, local_broker, start_consumer, counting_producer):
    log = HandlerLog()
    config = make_config(rabbitmq={"heartbeat": 5})
    consumer = start_consumer(config, handler=log.handler(delay=0.002))
    producer = counting_producer(config)
    load = Load(producer, 1500, prefix="restart", rate=300).start()
    load.wait_answered(300, 30)
    local_broker.stop()
    stopped_at = load.answered()
    local_broker.start()
    wait_for(lambda: producer.connected and consumer.connected, 60, "producer and consumer reconnected")
    load.finish(120)
    tally = load.tally("broker-restart", "Broker stop + start mid-load", log)
    tally.notes.update(answered_when_stopped=stopped_at, consumer_reconnects=consumer.reconnects)
    finish_scenario(request, tally)
    assert tally.reconnects >= 1 and consumer.reconnects >= 1


def events(outcome: Path, kind: str) -> set[str]:
    """The bodies of one kind of line (``confirmed``/``answered``) that producer_child.py wrote."""
    if not outcome.exists():
        return set()
    return {line.split(" ", 1)[1] for line in outcome.read_text().splitlines() if line.startswith(kind + " ")}


def test_producer_process_restart_with_requests_in_flight(request, make_config, start_consumer, counting_producer, amqp, tmp_path, caplog):
    log = HandlerLog()
    instance = f"restart-{uuid.uuid4().hex[:6]}"
    config = make_config(producer={"instance_id": instance}, consumer={"concurrency": 2})
    consumer = start_consumer(config, handler=log.handler(delay=0.004))
    config_path = tmp_path / "producer.toml"
    config_path.write_text(to_toml(config))
    config_path.chmod(0o600)
    outcome = tmp_path / "first-instance.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FAULTS_DIR), str(SUPPORT_DIR), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([sys.executable, str(FAULTS_DIR / "producer_child.py"), str(config_path), "1000", str(outcome)],
                             env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "child.log", "wb"))
    try:
        wait_for(lambda: len(events(outcome, "answered")) >= 200, 60, "the first instance to get 200 answers")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    confirmed_first = events(outcome, "confirmed")
    answered_first = events(outcome, "answered")
    assert len(answered_first) < 1000, "the first instance finished before the kill; nothing was in flight"
    # Let the consumer finish everything the first instance had queued.
    wait_for(lambda: amqp.queue_declare(config.topology.request_queue, passive=True).method.message_count == 0
             and consumer.in_flight == 0, 60, "request queue drained")
    reply_queue = reply_queue_name(config.topology, instance)
    waiting = amqp.queue_declare(reply_queue, passive=True).method.message_count
    processed = [body.decode() for body, _ in log.runs()]
    caplog.set_level(logging.WARNING, logger="burrow.producer")
    second = counting_producer(config)
    wait_for(lambda: second.stats().orphaned_replies == waiting, 30, f"{waiting} orphaned replies counted")
    load = Load(second, 1000, prefix="after-restart", rate=500).start()
    load.finish(60)
    tally = load.tally("producer-restart", "Producer process SIGKILL with requests in flight, restarted", log)
    processed_first = {body for body in processed if body.startswith("first-")}
    lost_first = confirmed_first - processed_first
    # Every reply of a processed request reached the first instance or still waits in its queue.
    lost_replies = max(0, len(processed_first) - len(answered_first) - waiting)
    twice = len(processed) - len(set(processed))
    tally.sent += 1000
    tally.confirmed += len(confirmed_first)
    tally.lost += len(lost_first) + lost_replies
    tally.unexpected += twice
    tally.notes.update(first_confirmed=len(confirmed_first), first_answered=len(answered_first),
                       replies_waiting=waiting, orphaned_counted=second.stats().orphaned_replies,
                       first_processed=len(processed_first), replies_lost=lost_replies)
    if lost_first:
        tally.problems.append(f"confirmed by the broker, never processed: {sorted(lost_first)[:5]}")
    finish_scenario(request, tally)
    assert second.stats().orphaned_replies == waiting
    logged = [r for r in caplog.records if r.name == "burrow.producer" and "orphaned reply" in r.getMessage()]
    assert len(logged) == waiting, "each orphaned reply is logged (never handed to a caller)"
    amqp.queue_delete(queue=reply_queue)


def test_close_connection_on_each_side(request, make_config, local_broker, start_consumer, counting_producer, amqp):
    log = HandlerLog()
    tag = uuid.uuid4().hex[:6]
    consumer_config = make_config(rabbitmq={"connection_name": f"fault-consumer-{tag}"})
    producer_config = make_config(rabbitmq={"connection_name": f"fault-producer-{tag}"})
    consumer = start_consumer(consumer_config, handler=log.handler())
    producer = counting_producer(producer_config)
    load = Load(producer, 2500, prefix="close", rate=2000, window=1000, timeout=40).start()
    load.wait_answered(300, 30)
    close_connections(local_broker, f"fault-producer-{tag}", 1)
    load.wait_answered(900, 60)
    close_connections(local_broker, f"fault-consumer-{tag}", 2)
    load.wait_answered(1500, 60)
    close_connections(local_broker, f"fault-producer-{tag}", 1)
    close_connections(local_broker, f"fault-consumer-{tag}", 2)
    load.finish(70)
    tally = load.tally("close-connection", "rabbitmqctl close_connection: producer, consumer, then both", log)
    tally.notes.update(consumer_reconnects=consumer.reconnects,
                       dead_lettered=amqp.queue_declare(producer_config.topology.dead_letter_queue, passive=True).method.message_count)
    finish_scenario(request, tally)
    assert producer.reconnects >= 2 and consumer.reconnects >= 4


def test_memory_alarm_blocks_then_recovers(request, make_config, local_broker, start_consumer, counting_producer):
    log = HandlerLog()
    blocked_timeout = 3.0
    config = make_config(rabbitmq={"blocked_connection_timeout": blocked_timeout})
    start_consumer(config, handler=log.handler())
    producer = counting_producer(config)
    load = Load(producer, 1500, prefix="alarm", rate=300).start()
    try:
        load.wait_answered(300, 30)
        local_broker.set_memory_watermark(0)
        alarm_at = time.monotonic()
        wait_for(lambda: producer.reconnects >= 1, blocked_timeout + 10,
                 "the producer to give up a connection blocked longer than blocked_connection_timeout")
        gave_up_after = time.monotonic() - alarm_at
        during = load.answered()
        time.sleep(2.0)  # measure: with publishing blocked, nothing gets answered during the alarm
        stalled = load.answered() - during
    finally:
        local_broker.set_memory_watermark(0.4)
    load.finish(120)
    tally = load.tally("memory-alarm", "Memory alarm (watermark 0, then 0.4) mid-load", log)
    tally.notes.update(blocked_timeout=blocked_timeout, gave_up_after_s=round(gave_up_after, 1),
                       answered_during_alarm_2s=stalled)
    finish_scenario(request, tally)
    assert gave_up_after <= blocked_timeout + 5, f"blocked for {gave_up_after:.1f}s"
    assert stalled <= 5, f"{stalled} answers while publishing was blocked: the alarm did not bite"
    # A reconnect while the broker still holds the old, blocked connection is refused (its
    # exclusive reply consumer); the backoff must grow instead of spinning at the initial delay.
    assert producer.reconnects <= 10, f"{producer.reconnects} reconnects during a ~5 s alarm"


def test_tcp_proxy_cut_stall_reset(request, make_config, local_broker, start_consumer, counting_producer):
    log = HandlerLog()
    heartbeat = 2
    stall = 4 * heartbeat  # the broker drops a peer after two missed heartbeats; pika after hb + 5 s
    with TcpProxy("127.0.0.1", local_broker.port) as proxy:
        config = make_config(rabbitmq={"port": proxy.port, "heartbeat": heartbeat, "socket_timeout": 3.0})
        consumer = start_consumer(config, handler=log.handler())
        producer = counting_producer(config)
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
        tally = load.tally("tcp-proxy", f"TCP proxy: cut, stall {stall}s (heartbeat {heartbeat}s), reset", log)
        tally.notes.update(consumer_reconnects=consumer.reconnects, proxy_connections=proxy.accepted,
                           connections_cut=cut, reconnects_after_stall=stall_reconnects, connections_reset=reset)
    finish_scenario(request, tally)
    assert cut == 3 and reset == 3, "each fault must hit the producer's and both consumer connections"
    assert stall_reconnects >= 1, "the stall went unnoticed"
    assert producer.reconnects >= 3 and consumer.reconnects >= 3


def test_broker_paused_shorter_and_longer_than_heartbeat(request, make_config, local_broker, start_consumer, counting_producer):
    log = HandlerLog()
    heartbeat = 1
    # pika checks for traffic from the broker every heartbeat + 5 s and gives up after one silent
    # check, so a frozen broker is noticed after 6-12 s; the long pause must outlast that.
    short_pause, long_pause = heartbeat / 2, 2 * (heartbeat + 5) + 1
    config = make_config(rabbitmq={"heartbeat": heartbeat, "socket_timeout": 3.0})
    consumer = start_consumer(config, handler=log.handler())
    producer = counting_producer(config)
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
    tally = load.tally("broker-pause", f"Broker SIGSTOP {short_pause:g}s, then {long_pause:g}s (heartbeat {heartbeat}s)", log)
    tally.notes.update(reconnects_after_short_pause=short_reconnects, consumer_reconnects=consumer.reconnects,
                       answered_at_resume=answered_at_resume)
    finish_scenario(request, tally)
    assert short_reconnects == 0, "a pause shorter than the heartbeat must not drop connections"
    assert answered_at_resume < 2000, "the load finished during the pause; the test proved nothing"
    assert producer.reconnects >= 1 and consumer.reconnects >= 1, "the long pause went unnoticed"


def test_handler_longer_than_three_heartbeats_under_load(request, make_config, start_consumer, counting_producer):
    log = HandlerLog()
    slow = log.handler()

    def handler(body, context):
        if body.startswith(b"long"):
            time.sleep(3.5)
        return slow(body, context)

    config = make_config(rabbitmq={"heartbeat": 1}, consumer={"concurrency": 8})
    consumer = start_consumer(config, handler=handler)
    producer = counting_producer(config)
    long_load = Load(producer, 6, prefix="long", rate=100).start()
    load = Load(producer, 1000, prefix="short", rate=200).start()
    load.finish(60)
    long_load.finish(30)
    tally = load.tally("long-handler", "Handlers running 3.5s (> 3 heartbeats of 1s) beside a short-request load", log,
                       extra_loads=[long_load])
    tally.notes["consumer_reconnects"] = consumer.reconnects
    finish_scenario(request, tally)
    assert consumer.reconnects == 0 and producer.reconnects == 0
    assert tally.handler_runs == 1006, "each request must run exactly once"


def test_poison_message_kills_every_consumer_until_dead_lettered(request, make_config, consumer_process, counting_producer, amqp, tmp_path, monkeypatch):
    log = HandlerLog(tmp_path / "handled.txt")
    monkeypatch.setenv("BURROW_TEST_RECORD", str(log.path))
    limit = 2
    # The default window (4 x 4 workers): a crash raises the delivery count of every request the
    # consumer held, but the next consumer takes redeliveries one at a time, so only the poison's
    # count keeps growing and the requests delivered beside it are answered.
    config = make_config(consumer={"handler": "burrow_test_handlers:poison", "concurrency": 4},
                         topology={"delivery_limit": limit})
    producer = counting_producer(config)
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
    tally = load.tally("poison", f"Poison request that kills the consumer process (delivery limit {limit})", log)
    poison_hits = log.path.read_text().count("poison-hit")
    tally.notes.update(consumer_crashes=crashes, poison_runs=poison_hits, dead_lettered=dead())
    finish_scenario(request, tally)
    assert poison_hits == limit + 1 and crashes == limit + 1
    assert proc.process.poll() is None
    # The surviving consumer's dead-letter watcher told the poison's caller, long before its 120 s.
    assert isinstance(poison.exception(timeout=30), DeliveryLimitExceeded)
    _method, _properties, body = amqp.basic_get(config.topology.dead_letter_queue, auto_ack=True)
    assert body == b"poison"
