"""``python -m benchmarks.services [--quick] [--out DIR] [--render RAW_JSON]``: one broker, the same
total load on 1 service, on 4 services, and on 1 service split over 4 partitions.

Part of ``make bench``. A quorum queue is served by one process on its leader's node, so one queue
is a ceiling; this shows what several queues on the *same* broker add, beside one another in one
run. Each system is one ``burrow-consumer`` process (8 handler threads in all and the same request
window in all: one service with concurrency 8, or 4 services or 4 partitions of 2 threads each)
and one producer process whose driver threads share the in-flight window over the system's
services. Systems run in turn, round after round, so a slow moment of the shared machine hits all
alike. The summary gives requests/s, p50/p99, CPU time per request, and each system's rate
against the one-service system at the same concurrency.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import sys
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Sequence

from burrow.config import ConsumerConfig, ServiceConfig, TopologyConfig
from burrow.tools.localbroker import LocalBroker

from benchmarks import clients
from benchmarks.cluster import Settings, load_averages, measure
from benchmarks.harness import BurrowConsumerProcess, Child, RunningSystem, machine_info
from benchmarks.rawfile import RawFile, results_folder, write_run

logger = logging.getLogger(__name__)

#: Handler threads of each system's consumer, whatever its number of queues.
THREADS = 8
#: Unacked requests each system's consumer holds over all its queues (the default for 8 threads).
WINDOW = 4 * THREADS


@dataclasses.dataclass(frozen=True)
class System:
    """``services`` named services of ``partitions`` queues each, sharing :data:`THREADS` threads."""

    name: str
    services: int
    partitions: int

    def consumer(self) -> ConsumerConfig:
        """A service's partitions share its threads; every queue gets an equal part of one window."""
        queues = self.services * self.partitions
        return ConsumerConfig(services={
            f"s{n}": ServiceConfig(handler="burrow.handlers:echo", concurrency=THREADS // self.services,
                                   prefetch=WINDOW // queues, partitions=self.partitions)
            for n in range(self.services)})


SYSTEMS = (System("1 service", 1, 1), System("4 services", 4, 1), System("1 service x 4 partitions", 1, 4))
BASELINE = SYSTEMS[0].name


def start(system: System, broker: LocalBroker, workdir: Path) -> RunningSystem:
    slug = system.name.replace(" ", "")
    topology = TopologyConfig.prefixed(f"bench.{slug}.{uuid.uuid4().hex[:4]}")
    server = BurrowConsumerProcess(workdir, slug, broker.amqp_url, topology, consumer=system.consumer())
    client: Child | None = None
    try:
        server.wait_ready()
        client = Child(f"{slug}-client", clients.burrow_client_main, broker.amqp_url, dataclasses.asdict(topology),
                       False, f"bench-{slug}", (), tuple(f"s{n}" for n in range(system.services)))
        client.wait_ready()
    except BaseException:
        if client is not None:
            client.stop(graceful=False)
        server.stop()
        raise
    return RunningSystem(system.name, server, client)


def run(settings: Settings) -> dict[str, Any]:
    """Start the broker and every system, measure them interleaved, return the raw results."""
    raw: dict[str, Any] = {"settings": dataclasses.asdict(settings), "load_average_start": load_averages(),
                           "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                           "measurements": []}
    with LocalBroker(name=f"bench-services-{uuid.uuid4().hex[:6]}") as broker, \
            tempfile.TemporaryDirectory(prefix="burrow-bench-services-") as tmp, ExitStack() as stack:
        raw["machine"] = machine_info(broker)
        running: dict[str, RunningSystem] = {}
        for system in SYSTEMS:
            running[system.name] = start(system, broker, Path(tmp))
            stack.callback(running[system.name].stop)
            running[system.name].client.command("closed", settings.warmup, 16, settings.max_seconds,
                                                False, timeout=settings.max_seconds + 60)
        for round_number in range(1, settings.rounds + 1):
            for concurrency in settings.concurrencies:
                for system in SYSTEMS:
                    result = measure(running[system.name], [broker.os_pid()], concurrency, settings)
                    result.update(system=system.name, round=round_number)
                    raw["measurements"].append(result)
                    print(f"round {round_number} {system.name:<26} c={concurrency:<4} {result['rate']:8.0f} req/s "
                          f"p50 {result['p50_ms'] or 0:7.2f} ms  load {result['load_average'][0]}",
                          file=sys.stderr, flush=True)
    raw["load_average_end"] = load_averages()
    return raw


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    """Per system and concurrency the median over rounds, and its rate over the one-service rate."""
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for item in raw["measurements"]:
        rows.setdefault((item["system"], item["concurrency"]), []).append(item)

    def median(values: list[float]) -> float | None:
        ordered = sorted(values)
        if not ordered:
            return None
        middle = len(ordered) // 2
        return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2

    table = []
    for (system, concurrency), items in rows.items():
        table.append({
            "system": system, "concurrency": concurrency, "rate": median([i["rate"] for i in items]),
            "p50_ms": median([i["p50_ms"] for i in items if i["p50_ms"] is not None]),
            "p99_ms": median([i["p99_ms"] for i in items if i["p99_ms"] is not None]),
            "failed": sum(i["failed"] for i in items),
            "cpu_ms_per_request": {role: median([i["cpu_ms_per_request"][role] for i in items])
                                   for role in ("producer", "consumer", "broker")},
        })
    baseline = {row["concurrency"]: row["rate"] for row in table if row["system"] == BASELINE}
    for row in table:
        base = baseline.get(row["concurrency"])
        row["vs_one_service"] = round(row["rate"] / base, 2) if base and row["rate"] is not None else None
    loads = [i["load_average"][0] for i in raw["measurements"]]
    return {"table": table, "machine": raw.get("machine", {}), "started": raw.get("started"),
            "settings": raw["settings"], "load_average_start": raw.get("load_average_start"),
            "load_average_end": raw.get("load_average_end"),
            "load_average_1min": {"min": min(loads), "max": max(loads)} if loads else {}}


def _shown(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else (f"{value:.{digits}f}" if digits else f"{value:.0f}")


def render(summary: dict[str, Any]) -> str:
    """The markdown table of :func:`summarise`'s result (a pure function of it)."""
    lines = [f"Services benchmark, {summary['started']}, {summary['machine'].get('cores')} cores, RabbitMQ "
             f"{summary['machine'].get('rabbitmq')}; 1-min load average {summary['load_average_1min']} "
             f"(start {summary.get('load_average_start')}, end {summary.get('load_average_end')}).", "",
             "| system | in flight | req/s | vs 1 service | p50 ms | p99 ms | failed | CPU ms/req producer | consumer | broker |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in sorted(summary["table"], key=lambda r: (r["concurrency"], r["system"])):
        cpu = row["cpu_ms_per_request"]
        lines.append(f"| {row['system']} | {row['concurrency']} | {_shown(row['rate'])} | "
                     f"{_shown(row['vs_one_service'], 2)} | {_shown(row['p50_ms'], 2)} | {_shown(row['p99_ms'], 2)} | "
                     f"{row['failed']} | {_shown(cpu['producer'], 3)} | {_shown(cpu['consumer'], 3)} | "
                     f"{_shown(cpu['broker'], 3)} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.services", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, smaller counts")
    parser.add_argument("--out", type=Path, help="output folder (default benchmarks/results/<UTC time>-services)")
    parser.add_argument("--render", type=Path, metavar="RAW_JSON", help="only summarise and print an existing raw.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.render:
        print(render(summarise(json.loads(args.render.read_text()))))
        return 0
    raw_file = RawFile("benchmarks.services", argv)
    settings = Settings.quick() if args.quick else Settings.full()
    out_dir = results_folder(args.out, "services")
    write_run(raw_file, out_dir, run(settings), summarise, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
