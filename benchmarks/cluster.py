"""``python -m benchmarks.cluster [--quick] [--out DIR] [--render JSON]``: burrow on a 3-node cluster vs one node.

Part of ``make bench``. One throwaway node and one throwaway 3-node cluster (all on this machine)
run side by side; burrow is measured on each with its quorum reply queue (the default, replicated),
with a classic reply queue (one node) and with direct reply-to, every system in turn, round after
round, so a slow moment of the shared machine hits all alike. Each system is a ``burrow-consumer``
process and a producer process (:mod:`benchmarks.clients`); on the cluster both list every node
and pick one at random, as deployed. The summary gives requests/s, p50/p99 and the CPU time per
request of producer, consumer and broker (all three nodes together on the cluster), plus the
ratios the README quotes: cluster vs one node, and quorum vs classic reply queue on each.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Sequence

from burrow.config import TopologyConfig
from burrow.tools.burst import percentile
from burrow.tools.localbroker import LocalBroker
from burrow.tools.localcluster import LocalCluster

from benchmarks import clients
from benchmarks.rawfile import RawFile, results_folder, write_run
from benchmarks.harness import BurrowConsumerProcess, Child, RunningSystem, cpu_seconds, machine_info

logger = logging.getLogger(__name__)



@dataclasses.dataclass(frozen=True)
class System:
    """One measured setup: on the one node or on the cluster, and how replies come back."""

    name: str
    cluster: bool
    reply: str  # "quorum", "classic" (reply queue types) or "direct" (direct reply-to)


SYSTEMS = tuple(
    System(f"{'cluster' if on_cluster else 'one-node'}/{reply}", on_cluster, reply)
    for on_cluster in (False, True)
    for reply in ("quorum", "classic", "direct")
)


@dataclasses.dataclass(frozen=True)
class Settings:
    rounds: int
    count: int
    concurrencies: tuple[int, ...]
    max_seconds: float
    warmup: int

    @classmethod
    def full(cls) -> "Settings":
        return cls(rounds=2, count=10_000, concurrencies=(16, 256), max_seconds=6.0, warmup=500)

    @classmethod
    def quick(cls) -> "Settings":
        return cls(rounds=1, count=3_000, concurrencies=(16, 256), max_seconds=3.0, warmup=200)


def load_averages() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def start(system: System, url: str, hosts: tuple[str, ...], workdir: Path, instance_id: str) -> RunningSystem:
    """Start the system's consumer process, then its producer process, both on ``hosts`` (or ``url``)."""
    slug = system.name.replace("/", "-")
    topology = TopologyConfig.prefixed(f"bench.{slug}.{uuid.uuid4().hex[:4]}",
                                       reply_queue_type="classic" if system.reply == "classic" else "quorum")
    server = BurrowConsumerProcess(workdir, slug, url, topology, hosts=hosts)
    client: Child | None = None
    try:
        server.wait_ready()
        client = Child(f"{slug}-client", clients.burrow_client_main, url, dataclasses.asdict(topology),
                       system.reply == "direct", instance_id, hosts)
        client.wait_ready()
    except BaseException:
        if client is not None:
            client.stop(graceful=False)
        server.stop()
        raise
    return RunningSystem(system.name, server, client)


@contextmanager
def brokers() -> Iterator[tuple[LocalBroker, LocalCluster]]:
    with LocalBroker(name=f"bench-one-{uuid.uuid4().hex[:6]}") as single, \
            LocalCluster(3, name=f"bench-cluster-{uuid.uuid4().hex[:6]}") as cluster:
        yield single, cluster


def measure(system: RunningSystem, broker_pids: list[int], concurrency: int, settings: Settings) -> dict[str, Any]:
    """One closed-loop measurement with the CPU milliseconds per answered request of each part."""
    pids = {"producer": system.client.pid, "consumer": system.server.pid}
    before = {role: cpu_seconds(pid) for role, pid in pids.items()}
    broker_before = sum(cpu_seconds(pid) for pid in broker_pids)
    result = system.client.command("closed", settings.count, concurrency, settings.max_seconds, True,
                                   timeout=settings.max_seconds + 60)
    answered = max(1, result["ok"])
    cpu = {role: (cpu_seconds(pid) - before[role]) * 1000 / answered for role, pid in pids.items()}
    cpu["broker"] = (sum(cpu_seconds(pid) for pid in broker_pids) - broker_before) * 1000 / answered
    latencies = sorted(result.pop("latencies"))
    return {
        **result,
        "concurrency": concurrency,
        "rate": result["ok"] / result["elapsed"] if result["elapsed"] > 0 else 0.0,
        "p50_ms": percentile(latencies, 0.5) * 1000 if latencies else None,
        "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else None,
        "cpu_ms_per_request": {role: round(value, 4) for role, value in cpu.items()},
        "load_average": load_averages(),
    }


def run(settings: Settings) -> dict[str, Any]:
    """Start both brokers and every system, measure them interleaved, return the raw results."""
    raw: dict[str, Any] = {"settings": dataclasses.asdict(settings), "load_average_start": load_averages(),
                           "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                           "measurements": [], "placement": {}}
    with brokers() as (single, cluster), tempfile.TemporaryDirectory(prefix="burrow-bench-cluster-") as tmp, \
            ExitStack() as stack:
        raw["machine"] = machine_info(single)
        running: dict[str, RunningSystem] = {}
        for system in SYSTEMS:
            url = cluster.nodes[0].amqp_url if system.cluster else single.amqp_url
            hosts = cluster.hosts if system.cluster else ()
            instance_id = f"bench-{system.name.replace('/', '-')}"
            running[system.name] = start(system, url, hosts, Path(tmp), instance_id)
            stack.callback(running[system.name].stop)
            running[system.name].client.command("closed", settings.warmup, 16, settings.max_seconds,
                                                False, timeout=settings.max_seconds + 60)
        raw["placement"] = {name: connections_by_node(cluster, name) for name in running if name.startswith("cluster")}
        for round_number in range(1, settings.rounds + 1):
            for concurrency in settings.concurrencies:
                for system in SYSTEMS:
                    pids = [node.os_pid() for node in cluster.nodes] if system.cluster else [single.os_pid()]
                    result = measure(running[system.name], pids, concurrency, settings)
                    result.update(system=system.name, round=round_number)
                    raw["measurements"].append(result)
                    print(f"round {round_number} {system.name:<18} c={concurrency:<4} {result['rate']:8.0f} req/s "
                          f"p50 {result['p50_ms'] or 0:7.2f} ms  p99 {result['p99_ms'] or 0:7.2f} ms  "
                          f"load {result['load_average'][0]}", file=sys.stderr, flush=True)
    raw["load_average_end"] = load_averages()
    return raw


def connections_by_node(cluster: LocalCluster, system: str) -> dict[str, int]:
    """How many of the system's three connections (producer, the consumer's two) each node holds."""
    slug = system.replace("/", "-")
    counts: dict[str, int] = {}
    for name in (f"bench-{slug}-consumer", f"bench-bench-{slug}"):
        for node in cluster.connections(name):
            counts[node.name] = counts.get(node.name, 0) + 1
    return counts


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    """Per system and concurrency: the median over rounds of rate, p50, p99 and CPU; then the ratios."""
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for item in raw["measurements"]:
        rows.setdefault((item["system"], item["concurrency"]), []).append(item)

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        middle = len(ordered) // 2
        return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2

    table = []
    for (system, concurrency), items in rows.items():
        table.append({
            "system": system,
            "concurrency": concurrency,
            "rate": round(median([i["rate"] for i in items])),
            "p50_ms": round(median([i["p50_ms"] for i in items if i["p50_ms"] is not None] or [0.0]), 2),
            "p99_ms": round(median([i["p99_ms"] for i in items if i["p99_ms"] is not None] or [0.0]), 2),
            "failed": sum(i["failed"] for i in items),
            "cpu_ms_per_request": {role: round(median([i["cpu_ms_per_request"][role] for i in items]), 3)
                                   for role in ("producer", "consumer", "broker")},
        })
    by_key = {(row["system"], row["concurrency"]): row for row in table}
    ratios = []
    for concurrency in raw["settings"]["concurrencies"]:
        def ratio(a: str, b: str) -> float:
            return round(by_key[(a, concurrency)]["rate"] / max(1, by_key[(b, concurrency)]["rate"]), 2)

        ratios.append({
            "concurrency": concurrency,
            "cluster_vs_one_node_quorum_replies": ratio("cluster/quorum", "one-node/quorum"),
            "cluster_vs_one_node_direct": ratio("cluster/direct", "one-node/direct"),
            "quorum_vs_classic_replies_one_node": ratio("one-node/quorum", "one-node/classic"),
            "quorum_vs_classic_replies_cluster": ratio("cluster/quorum", "cluster/classic"),
        })
    loads = [i["load_average"][0] for i in raw["measurements"]]
    return {"table": table, "ratios": ratios, "machine": raw.get("machine", {}), "started": raw.get("started"),
            "settings": raw["settings"], "placement": raw.get("placement", {}),
            "load_average_1min": {"min": min(loads), "max": max(loads)} if loads else {}}


def render(summary: dict[str, Any]) -> str:
    """The markdown table of :func:`summarise`'s result (a pure function of it)."""
    lines = [f"Cluster benchmark, {summary['started']}, {summary['machine'].get('cores')} cores, RabbitMQ "
             f"{summary['machine'].get('rabbitmq')}; 1-min load average {summary['load_average_1min']}.", "",
             "| system | in flight | req/s | p50 ms | p99 ms | failed | CPU ms/req producer | consumer | broker |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in sorted(summary["table"], key=lambda r: (r["concurrency"], r["system"])):
        cpu = row["cpu_ms_per_request"]
        lines.append(f"| {row['system']} | {row['concurrency']} | {row['rate']} | {row['p50_ms']} | {row['p99_ms']} | "
                     f"{row['failed']} | {cpu['producer']} | {cpu['consumer']} | {cpu['broker']} |")
    lines += ["", "| in flight | cluster / one node (quorum replies) | cluster / one node (direct) | "
              "quorum / classic replies, one node | quorum / classic replies, cluster |", "|---:|---:|---:|---:|---:|"]
    for item in summary["ratios"]:
        lines.append(f"| {item['concurrency']} | {item['cluster_vs_one_node_quorum_replies']} | "
                     f"{item['cluster_vs_one_node_direct']} | {item['quorum_vs_classic_replies_one_node']} | "
                     f"{item['quorum_vs_classic_replies_cluster']} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, smaller counts")
    parser.add_argument("--out", type=Path, help="output folder (default benchmarks/results/<UTC time>-cluster)")
    parser.add_argument("--render", type=Path, metavar="RAW_JSON", help="only summarise and print an existing raw.json")
    args = parser.parse_args(argv)
    raw_file = RawFile("benchmarks.cluster", argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.render:
        print(render(summarise(json.loads(args.render.read_text()))))
        return 0
    settings = Settings.quick() if args.quick else Settings.full()
    out_dir = results_folder(args.out, "cluster")
    write_run(raw_file, out_dir, run(settings), summarise, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
