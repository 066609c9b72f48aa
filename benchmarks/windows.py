"""``python -m benchmarks.windows [--tiny] [--out DIR]``: the consumer's request window, measured.

Issue 26 asks which default window to ship: 32 (4 per worker, the default until this scenario ran), 64 (the
default since), 128, or the adaptive window (``consumer.window = "adaptive"``). This scenario measures
the four on one and on three
``burrow-consumer`` processes (8 workers each, the defaults otherwise) with a slow handler mix: one
request in ``SLOW_EVERY`` sleeps ``SLOW_SECONDS`` in its handler (:mod:`benchmarks.handlers`), the rest
echo at once.
Per case, in interleaved rounds on one throwaway broker, each with its own queue:

1. throughput: :data:`IN_FLIGHT` requests in flight through ``burrow.Producer`` (closed loop),
   with p50/p99 latency;
2. a burst's tail: :data:`BURST` requests submitted at once; how long until the last answer, and
   the last answer against the median one (a burst's last requests queued behind a slow consumer
   while the others idle is what a wide window risks).

Every request is counted by id from the caller's side: a case with any failure says so. The JSON
goes to ``benchmarks/results/<UTC time>-windows/windows.json`` behind its provenance block
(:mod:`benchmarks.rawfile`: revision, command, dates, load before and after); the table is printed. Speed comparisons need a quiet machine (load
under 1 at the start); ``--tiny`` only proves the scenario runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Sequence

from burrow.config import BurrowConfig, ConsumerConfig, RabbitMQConfig, TopologyConfig
from burrow.producer import Producer
from burrow.tools.burst import percentile
from burrow.tools.localbroker import LocalBroker

from benchmarks import RESULTS_DIR, clients
from benchmarks.handlers import SLOW_EVERY, SLOW_SECONDS, body
from benchmarks.harness import BurrowConsumerProcess, machine_info
from benchmarks.rawfile import RawFile

#: The windows compared: name -> the consumer settings that give it (8 workers).
WINDOWS = {
    "32": {"prefetch": 32},
    "64": {"prefetch": 64},
    "128": {"prefetch": 128},
    "adaptive": {"prefetch": 0, "window": "adaptive"},
}
CONSUMER_COUNTS = (1, 3)
IN_FLIGHT = 256
BURST = 2000
HANDLER = "benchmarks.handlers:mixed"
REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Sizes:
    rounds: int
    count: int
    burst: int
    max_seconds: float

    @classmethod
    def full(cls) -> "Sizes":
        return cls(rounds=2, count=20_000, burst=BURST, max_seconds=30.0)

    @classmethod
    def tiny(cls) -> "Sizes":
        return cls(rounds=1, count=400, burst=200, max_seconds=10.0)


def closed_loop(producer: Producer, count: int, in_flight: int, max_seconds: float) -> dict[str, Any]:
    """Keep ``in_flight`` requests outstanding until ``count`` are sent; latency per answered id."""
    pending: dict[int, tuple[float, Any]] = {}
    latencies: list[float] = []
    failed: list[int] = []
    started = time.monotonic()
    sent = 0
    while sent < count or pending:
        while sent < count and len(pending) < in_flight and time.monotonic() - started < max_seconds:
            pending[sent] = (time.monotonic(), producer.submit(body(sent)))
            sent += 1
        if not pending:
            break
        index = next(iter(pending))
        begin, future = pending.pop(index)
        try:
            ok = future.result(timeout=clients.REPLY_TIMEOUT) == b"Consumer processed: " + body(index)
        except Exception:  # noqa: BLE001 - counted by id below
            ok = False
        if ok:
            latencies.append(time.monotonic() - begin)
        else:
            failed.append(index)
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    return {"sent": sent, "ok": len(latencies), "failed": failed, "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(percentile(ordered, 0.5) * 1000, 3), "p99_ms": round(percentile(ordered, 0.99) * 1000, 3)}


def burst(producer: Producer, count: int) -> dict[str, Any]:
    """``count`` requests at once; when each is answered, from the burst's start."""
    started = time.monotonic()
    done: dict[int, float] = {}
    futures = {index: producer.submit(body(index)) for index in range(count)}
    for index, future in futures.items():
        future.add_done_callback(lambda _f, index=index: done.__setitem__(index, time.monotonic() - started))
    failed = []
    for index, future in futures.items():
        try:
            if future.result(timeout=clients.REPLY_TIMEOUT) != b"Consumer processed: " + body(index):
                failed.append(index)
        except Exception:  # noqa: BLE001 - counted by id
            failed.append(index)
    times = sorted(done.values())
    median = statistics.median(times)
    return {"sent": count, "failed": failed, "last_s": round(times[-1], 3), "median_s": round(median, 3),
            "last_over_median": round(times[-1] / median, 2)}


def run_case(broker: LocalBroker, workdir: Path, window: str, consumers: int, sizes: Sizes, round_no: int) -> dict[str, Any]:
    """One window on ``consumers`` consumer processes: throughput, then a burst."""
    name = f"w{window}-c{consumers}-r{round_no}"
    topology = TopologyConfig.prefixed(f"bench.windows.{name}")
    settings = ConsumerConfig(handler=HANDLER, **WINDOWS[window])
    with ExitStack() as stack:
        processes = []
        for number in range(consumers):
            process = BurrowConsumerProcess(workdir, f"{name}-{number}", broker.amqp_url, topology, consumer=settings)
            stack.callback(process.stop)
            processes.append(process)
        for process in processes:
            process.wait_ready()
        config = BurrowConfig(rabbitmq=RabbitMQConfig.from_url(broker.amqp_url, connection_name=f"bench-{name}"),
                              topology=topology)
        producer = Producer(config, instance_id=f"bench-{name}").start(wait=30)
        stack.callback(producer.stop, 0)
        closed_loop(producer, min(500, sizes.count), 64, sizes.max_seconds)  # warm-up
        return {"window": window, "consumers": consumers, "round": round_no,
                "throughput": closed_loop(producer, sizes.count, IN_FLIGHT, sizes.max_seconds),
                "burst": burst(producer, sizes.burst)}


def table(cases: list[dict[str, Any]]) -> str:
    """One row per window and consumer count: medians over the rounds, failures summed."""
    lines = [f"| window | consumers | req/s at {IN_FLIGHT} in flight | p50 / p99 ms | burst of {cases[0]['burst']['sent'] if cases else BURST}: "
             "last answer s (last / median) | failed |", "|---|---|---|---|---|---|"]
    keys = dict.fromkeys((case["window"], case["consumers"]) for case in cases)
    for window, consumers in keys:
        runs = [case for case in cases if (case["window"], case["consumers"]) == (window, consumers)]
        rps = statistics.median(run["throughput"]["rps"] for run in runs)
        p50 = statistics.median(run["throughput"]["p50_ms"] for run in runs)
        p99 = statistics.median(run["throughput"]["p99_ms"] for run in runs)
        last = statistics.median(run["burst"]["last_s"] for run in runs)
        ratio = statistics.median(run["burst"]["last_over_median"] for run in runs)
        failed = sum(len(run["throughput"]["failed"]) + len(run["burst"]["failed"]) for run in runs)
        lines.append(f"| {window} | {consumers} | {rps:.0f} | {p50:.2f} / {p99:.2f} | {last:.2f} ({ratio:.2f}x) | {failed} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.windows", description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few hundred requests, one round: proves it runs")
    parser.add_argument("--out", type=Path, help="output folder (default benchmarks/results/<UTC time>-windows)")
    args = parser.parse_args(argv)
    raw_file = RawFile("benchmarks.windows", argv)
    sizes = Sizes.tiny() if args.tiny else Sizes.full()
    # The consumer processes import the handler from this checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    stamp = datetime.datetime.now(datetime.timezone.utc)
    out_dir = args.out or RESULTS_DIR / f"{stamp.strftime('%Y%m%dT%H%M%SZ')}-windows"
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "sizes": dataclasses.asdict(sizes),
        "handler": {"slow_every": SLOW_EVERY, "slow_seconds": SLOW_SECONDS}, "cases": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="burrow-bench-windows-"))
    with LocalBroker(name=f"burrow-bench-windows-{os.getpid()}") as broker:
        results["machine"] = machine_info(broker)
        for round_no in range(1, sizes.rounds + 1):
            for consumers in CONSUMER_COUNTS:
                for window in WINDOWS:
                    case = run_case(broker, workdir, window, consumers, sizes, round_no)
                    print(f"round {round_no} window {window:>8} x{consumers}: {case['throughput']['rps']:.0f} req/s, "
                          f"burst last {case['burst']['last_s']:.2f} s", file=sys.stderr, flush=True)
                    results["cases"].append(case)
    raw_file.write(out_dir / "windows.json", results, indent=1)
    print(table(results["cases"]))
    print(f"json: {out_dir / 'windows.json'}", file=sys.stderr)
    failed = sum(len(c["throughput"]["failed"]) + len(c["burst"]["failed"]) for c in results["cases"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
