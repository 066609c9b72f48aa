"""The soak (``make soak``, not in CI): the shipped daemons at half their measured peak for 30
minutes, with a consumer SIGKILL and a broker restart in the middle.

1. Start a throwaway RabbitMQ node, ``burrow-consumer`` (the recording test handler) and
   ``burrow-producer`` (HTTP API on a Unix socket).
2. Measure the peak: HTTP clients with no pacing for ``--peak-seconds``; the soak rate is half the
   answers per second they got (on a shared machine the peak is what this machine gave then).
3. Soak at that rate for ``--minutes``; at one third SIGKILL the consumer and start a new one (as
   systemd's ``Restart=`` would), at two thirds stop and restart the broker on the same data.
   Every 10 s sample RSS, file descriptors and threads of both daemons.
4. Count per request id from the clients' side (tests/faults/faultcheck.py: answered, 503, 504,
   refused, lost, answered twice; each 503/504 explained by tests/support/explain.py from the
   producer's outage windows in its log and the dead-letter queue, or lost; duplicates explained
   by the redelivered flag or a logged republish, or unexplained) and write ``soak.json`` (the
   tally, with the resource samples; written marked failed, with the reason, even when the soak
   dies before counting), its history line (tests/support/tallies.py) and ``soak-rss.png`` (RSS
   of both daemons over time) to ``--out``.

Exit status 0 when the tally passes. ``make soak`` runs it with
PYTHONPATH=tests/support:tests/faults (the helpers it shares with the fault tests).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

from burrow.config import BurrowConfig, ConsumerConfig, ProducerConfig, RabbitMQConfig, TopologyConfig
from burrow.tools.localbroker import LocalBroker

from daemonload import HttpLoad
from explain import dead_letters, explain, outage_windows
from faultcheck import HandlerLog, RepublishLog, Tally, count
from processes import Daemon
from tallies import ScenarioRun

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
CLIENTS = 32
SAMPLE_EVERY = 10.0


class Sampler:
    """Samples the daemons' resources every ``SAMPLE_EVERY`` seconds in a thread."""

    def __init__(self, daemons: dict[str, Daemon], started: float) -> None:
        self.daemons = daemons
        self.started = started
        self.samples: list[dict[str, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def sample(self) -> dict[str, object]:
        row: dict[str, object] = {"t": round(time.monotonic() - self.started, 1)}
        for name, daemon in self.daemons.items():
            try:
                row[name] = daemon.resources()
            except (OSError, KeyError, AssertionError):
                row[name] = None  # between a kill and its restart
        self.samples.append(row)
        return row

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(SAMPLE_EVERY + 5)


def plot(samples: list[dict[str, object]], events: list[tuple[float, str]], path: Path) -> None:
    """RSS of both daemons over time, with the faults marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4))
    for name in ("producer", "consumer"):
        points = [(row["t"] / 60, row[name]["rss_kib"] / 1024) for row in samples if row.get(name)]  # type: ignore[index,operator]
        axis.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=f"burrow-{name}")
    for at, what in events:
        axis.axvline(at / 60, color="grey", linestyle="--")
        axis.annotate(what, (at / 60, axis.get_ylim()[1]), rotation=90, va="top", ha="right", fontsize=8)
    axis.set_xlabel("minutes")
    axis.set_ylabel("RSS (MiB)")
    axis.set_title("burrow daemons during the soak")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "reliability")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--peak-seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, help="skip the peak measurement and soak at this rate")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    argv_text = " ".join(argv if argv is not None else sys.argv[1:])
    run = ScenarioRun("soak", f"Daemons at half the measured peak for {args.minutes:g} min, consumer SIGKILL at 1/3, "
                              "broker restart at 2/3, counted at the HTTP clients",
                      f"make soak SOAK_ARGS='{argv_text}'" if argv_text else "make soak", args.out)
    failure: str | None = None
    try:
        return 0 if soak(args, run) else 1  # a tally whose counts fail was saved with result: fail
    except BaseException as exc:  # the run's verdict: kept in its tally before the error goes on
        failure = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:300]
        raise
    finally:
        run.end(failure)


def soak(args: argparse.Namespace, run: ScenarioRun) -> bool:
    """Steps 1-4 of the module docstring; True when the saved tally passes."""
    work = Path(tempfile.mkdtemp(prefix="burrow-soak-"))
    record = work / "handled.txt"
    broker = LocalBroker(name=f"burrow-soak-{uuid.uuid4().hex[:6]}").start()
    daemons: dict[str, Daemon] = {}
    try:
        config = BurrowConfig(
            rabbitmq=RabbitMQConfig.from_url(broker.amqp_url, connection_name="soak", reconnect_initial_delay=0.2,
                                             reconnect_max_delay=2.0, heartbeat=10),
            topology=TopologyConfig.prefixed("soak"),
            producer=ProducerConfig(instance_id="soak", request_timeout=30.0),
            consumer=ConsumerConfig(handler="burrow_test_handlers:record"),
        )
        env = {"BURROW_TEST_RECORD": str(record)}
        daemons["consumer"] = Daemon("consumer", config, work, "consumer-0", env).start()
        daemons["producer"] = Daemon("producer", config, work, "producer").start()
        for daemon in daemons.values():
            daemon.wait_ready()
        socket_path = daemons["producer"].socket_path
        if args.rate:
            rate, peak = args.rate, None
        else:
            probe = HttpLoad(socket_path, 10**7, prefix="peak", rate=100000, clients=CLIENTS,
                             deadline=time.monotonic() + args.peak_seconds).start()
            probe.finish(args.peak_seconds + 60)
            peak = probe.answered() / args.peak_seconds
            rate = max(1.0, peak / 2)
        logger.info("Peak %s req/s; soaking at %.0f req/s for %.0f min", peak and round(peak), rate, args.minutes)
        duration = args.minutes * 60
        started = time.monotonic()
        sampler = Sampler(daemons, started).start()
        first = sampler.sample()
        load = HttpLoad(socket_path, int(rate * duration) + 1, prefix="soak", rate=rate, clients=CLIENTS,
                        deadline=started + duration).start()
        run.partial = lambda: count(Tally(run.scenario, run.title, allow_errors=True), load.outcomes(), None).document()
        events: list[tuple[float, str]] = []
        time.sleep(duration / 3)  # the soak itself: steady load until the first fault
        daemons["consumer"].kill()
        events.append((time.monotonic() - started, "consumer SIGKILL"))
        daemons["consumer"] = Daemon("consumer", config, work, "consumer-1", env).start()
        daemons["consumer"].wait_ready()
        time.sleep(max(0.0, started + 2 * duration / 3 - time.monotonic()))  # steady load until the second fault
        events.append((time.monotonic() - started, "broker restart"))
        broker.stop()
        broker.start()
        outcomes = load.finish(duration + 120)
        last = sampler.sample()
        sampler.stop()
        republished = RepublishLog().read_daemon_log(daemons["producer"].log_path)
        windows = outage_windows(daemons["producer"].log())
        runs = HandlerLog(record).runs()
        tally = Tally(run.scenario, run.title, allow_errors=True, reconnects=len(windows),
                      outage_windows=[window.as_list() for window in windows])
        outcomes, tally.non_answers = explain(outcomes, {handled.body for handled in runs}, windows,
                                              dead_letters(broker.amqp_url, config.topology.dead_letter_queue))
        count(tally, outcomes, runs, republished.counts())
        latencies = sorted(load.latencies)
        tally.duration_s = round(time.monotonic() - started, 1)
        tally.notes.update(peak_rps=peak and round(peak), rate_rps=round(rate), clients=CLIENTS,
                           rate_from="--rate" if args.rate else "half the measured peak",
                           p50_ms=latencies and round(latencies[len(latencies) // 2] * 1000, 1),
                           p99_ms=latencies and round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
                           start=first, end=last, events=[(round(at, 1), what) for at, what in events])
        run.save({**tally.document(), "samples": sampler.samples}, tally.reason())
        plot(sampler.samples, events, args.out / "soak-rss.png")
        logger.info("Soak: %s", {k: getattr(tally, k) for k in ("sent", "answered", "failed_503", "failed_504", "refused",
                                                                 "lost", "answered_twice", "duplicates_explained",
                                                                 "duplicates_unexplained", "ok")})
        return tally.ok
    finally:
        for daemon in daemons.values():
            daemon.stop()
        broker.close()


if __name__ == "__main__":
    sys.exit(main())
