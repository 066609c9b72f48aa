"""A producer's new connection beside one the broker has not yet noticed is dead: a standby, not a refusal.

The producer process (producer_child.py, the default reply queue: classic on this one node) is
frozen with SIGSTOP while its requests are being answered: its socket stays open, so the broker
keeps its connection, and its reply consumer, until two heartbeats are missed, and meanwhile sends
it replies nobody acks (a link cut until heartbeats fire looks the same to the broker). A second
producer with the same ``instance_id`` starts at once. The reply queue has single active consumer
and the producer does not consume exclusively, so the second one registers as a standby (an
exclusive consume is refused with ACCESS_REFUSED, and the producer reconnects until the broker lets
the old connection go), and once the broker drops the frozen connection, every reply it had sent
there and never got acked goes back to the queue and on to the second producer: delay, never
loss. Counted by request id: each request of the frozen producer the handler ran is answered to
its caller before the freeze or reaches the second producer (which logs it as orphaned: the caller
is the frozen process), and the second producer's own requests are all answered.
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

from burrow.topology import reply_queue_name

from broker_helpers import queue_depth
from faultcheck import HandlerLog, expected_reply, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

FAULTS_DIR = Path(__file__).resolve().parent
SUPPORT_DIR = FAULTS_DIR.parent / "support"
#: Requests of the frozen producer, of the second one, and the heartbeat (s) both use.
FIRST, SECOND, HEARTBEAT = 600, 50, 2


def bodies(outcome: Path, kind: str) -> set[str]:
    """The bodies of producer_child.py's ``<kind> <body> ...`` lines (``confirmed``, ``answered``)."""
    if not outcome.exists():
        return set()
    return {line.split(" ")[1] for line in outcome.read_text().splitlines() if line.startswith(kind + " ")}


def test_a_new_connection_waits_as_standby_and_gets_the_replies_a_frozen_one_held(
        make_config, start_consumer, start_producer, amqp, tmp_path, caplog):
    from processes import write_config

    instance = f"standby-{uuid.uuid4().hex[:6]}"
    config = make_config(producer={"instance_id": instance}, rabbitmq={"heartbeat": HEARTBEAT},
                         consumer={"concurrency": 4})
    reply_queue = reply_queue_name(config.topology, instance, config.rabbitmq)
    assert reply_queue.endswith(".classic"), "the default on one node is the classic reply queue"
    log = HandlerLog()
    consumer = start_consumer(config, handler=log.handler(delay=0.02))
    outcome = tmp_path / "first-instance.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FAULTS_DIR), str(SUPPORT_DIR), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([sys.executable, str(FAULTS_DIR / "producer_child.py"),
                              str(write_config(config, tmp_path / "producer.toml")), str(FIRST), str(outcome)],
                             env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "child.log", "wb"))
    try:
        wait_for(lambda: len(bodies(outcome, "confirmed")) == FIRST and len(bodies(outcome, "answered")) >= 100, 60,
                 "the first producer to have every request confirmed and 100 answered")
        child.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        answered_first = bodies(outcome, "answered")
        caplog.set_level(logging.WARNING, logger="burrow.producer")
        second = start_producer(config)
        ready_after = time.monotonic() - frozen_at
        futures = {f"second-{n}": second.submit(f"second-{n}".encode()) for n in range(SECOND)}
        # The handler runs every request of the frozen producer that the broker has; the replies
        # go to the frozen connection (the active consumer) until the broker drops it.
        wait_for(lambda: consumer.in_flight == 0 and queue_depth(amqp, config.topology.request_queue) == 0
                 and len(log.runs()) >= FIRST, 60, "every request of the frozen producer handled")
        second_answers = {body: future.result(timeout=60) for body, future in futures.items()}
        answered_second_after = time.monotonic() - frozen_at
        runs = {run.body.decode(): run.correlation_id for run in log.runs() if run.body.startswith(b"first-")}

        def orphaned() -> set[str]:
            return {getattr(record, "CORRELATION_ID", None) for record in caplog.records
                    if record.name == "burrow.producer" and "orphaned reply" in record.getMessage()}

        def missing() -> list[str]:
            taken = orphaned()
            return sorted(body for body, cid in runs.items() if body not in answered_first and cid not in taken)

        wait_for(lambda: not missing(), 60, "every reply the frozen producer did not take to reach the second one")
        wait_for(lambda: queue_depth(amqp, reply_queue) == 0, 30, "the reply queue to be empty")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    held = len(runs) - len(answered_first)
    print(f"frozen producer: {len(runs)} requests run, {len(answered_first)} answered before the freeze, {held} "
          f"replies reached the standby ({len(orphaned())} orphan records); standby ready after {ready_after:.1f} s, "
          f"its {SECOND} requests answered after {answered_second_after:.1f} s")
    assert len(runs) == FIRST
    assert second_answers == {body: expected_reply(body.encode()) for body in futures}
    assert held > 0, "the freeze came too late: nothing was left to hand over"
    assert second.reconnects == 0, f"the second producer reconnected {second.reconnects} times: its consume was refused"
    amqp.queue_delete(queue=reply_queue)
