"""The shipped daemons under fault, counted at their HTTP clients.

``burrow-consumer`` and ``burrow-producer`` run as processes on the suite's broker; 16 HTTP clients
each hold one request open at a time on the producer's Unix socket (``POST /v1/requests``) while
the test SIGKILLs the consumer (restarted like systemd's ``Restart=`` would), crashes the broker
(SIGKILL, restarted on the same data) or restarts it cleanly. Clients whose request was accepted
before the outage wait for it across the outage; requests arriving during it get 503. Every accepted request must be
answered 200 with its own reply exactly once, or with a 503/504 explained for that request
(explain.py: a 503 inside a window in which the producer's log says it had no broker, a 504 at or
after its deadline and, if it never ran, found in the dead-letter queue by correlation id); a
refused connection fails every scenario here, since none of them breaks the producer daemon. No
request may run in a handler twice unless the second run was flagged ``redelivered`` or the
producer logged a republish of it (see faultcheck.py).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Iterator

import pytest

from burrow.config import BurrowConfig

from daemonload import HttpLoad, health
from explain import dead_letters, explain, outage_windows
from faultcheck import HandlerLog, RepublishLog, Tally, begin_scenario, count, finish_scenario, wait_for
from processes import Daemon
from tallies import ScenarioRun

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

REQUESTS = 1500
RATE = 150


@dataclasses.dataclass
class Rig:
    """The daemons of one test: :meth:`start` one more, all stopped by the fixture at the end."""

    config: BurrowConfig
    amqp_url: str
    folder: Path
    log: HandlerLog
    started: list[Daemon] = dataclasses.field(default_factory=list)

    def start(self, role: str, name: str) -> Daemon:
        daemon = Daemon(role, self.config, self.folder, name, env={"BURROW_TEST_RECORD": str(self.log.path)}).start()
        self.started.append(daemon)
        daemon.wait_ready()
        return daemon

    def tally(self, run: ScenarioRun, load: HttpLoad, producer: Daemon) -> Tally:
        """Wait for every client, explain each 503/504 by id (the producer's outage windows from
        its log, the dead-letter queue), then count them against the handler runs and the
        republishes the producer daemon logged."""
        outcomes = load.finish(150)
        windows = outage_windows(producer.log())
        runs = self.log.runs()
        dead = dead_letters(self.amqp_url, self.config.topology.dead_letter_queue)
        tally = Tally(run.scenario, run.title, allow_errors=True, duration_s=round(time.monotonic() - load.started, 1),
                      reconnects=len(windows), outage_windows=[window.as_list() for window in windows])
        outcomes, tally.non_answers = explain(outcomes, {handled.body for handled in runs}, windows, dead)
        count(tally, outcomes, runs, RepublishLog().read_daemon_log(producer.log_path).counts())
        return tally


@pytest.fixture
def rig(make_config, broker, tmp_path) -> Iterator[Rig]:
    config = make_config(consumer={"handler": "burrow_test_handlers:record", "concurrency": 4},
                         rabbitmq={"heartbeat": 5})
    rig = Rig(config, broker.amqp_url, tmp_path, HandlerLog(tmp_path / "handled.txt"))
    try:
        yield rig
    finally:
        for daemon in rig.started:
            daemon.stop()


def test_daemons_consumer_sigkill(request, rig):
    run = begin_scenario(request, "daemons-consumer-sigkill", "Daemons over HTTP: consumer SIGKILL mid-load, restarted")
    consumer = rig.start("consumer", "consumer-0")
    producer = rig.start("producer", "producer")
    load = HttpLoad(producer.socket_path, REQUESTS, prefix="d-kill", rate=RATE).start()
    load.wait_answered(300, 60)
    consumer.kill()
    killed_at = load.answered()
    rig.start("consumer", "consumer-1")
    tally = rig.tally(run, load, producer)
    tally.notes.update(answered_when_killed=killed_at)
    finish_scenario(request, tally)
    assert killed_at < REQUESTS, "the load finished before the kill; the test proved nothing"
    assert tally.answered == REQUESTS, "a consumer restart is invisible to the HTTP clients"


@pytest.mark.parametrize("fault", ["crash", "restart"])
def test_daemons_broker_outage(request, fault, rig, local_broker):
    what = "SIGKILL, restarted on the same data" if fault == "crash" else "stop + start"
    run = begin_scenario(request, f"daemons-broker-{fault}", f"Daemons over HTTP: broker {what} mid-load")
    rig.start("consumer", "consumer")
    producer = rig.start("producer", "producer")
    # Runs until 300 answers after the outage (rabbitmqctl alone takes seconds on a busy host).
    load = HttpLoad(producer.socket_path, 20000, prefix=f"d-{fault}", rate=RATE).start()
    load.wait_answered(300, 60)
    if fault == "crash":
        local_broker.crash()
    else:
        local_broker.stop()
    down_at = load.answered()
    # Seen from outside: the producer knows the broker is gone (new requests get 503 now).
    wait_for(lambda: health(producer.socket_path) == 503, 30, "GET /v1/health to answer 503")
    local_broker.start()
    wait_for(lambda: health(producer.socket_path) == 200, 90, "GET /v1/health to answer 200 again")
    load.wait_answered(down_at + 300, 90)
    load.stop()
    tally = rig.tally(run, load, producer)
    tally.notes.update(answered_when_down=down_at)
    finish_scenario(request, tally)
    assert tally.reconnects >= 1, "the producer's log shows no outage window: the fault did not bite"
