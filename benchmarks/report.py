"""Turn a run's raw measurements into the published results: JSON, a markdown table and a PNG.

:func:`summarise` reduces raw latencies to percentiles and a CDF (so the JSON stays small),
computes each system's throughput per concurrency (median over the interleaved rounds) and holds
it against the targets of :mod:`benchmarks.targets`; :func:`markdown` and :func:`plot` render that summary.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

from burrow.tools.burst import percentile

from benchmarks import asyncbench, httpbench, targets

logger = logging.getLogger(__name__)

LABELS = {
    "burrow-reliable": "burrow, reliable mode",
    "burrow-direct": "burrow, direct reply-to",
    "baseline": "seed-style baseline",
    httpbench.HTTP_API: httpbench.LABEL,
    "reliable-prefetch16": "variant: reliable, prefetch 16 (the default until 2026-11-28)",
    "direct-prefetch16": "variant: direct reply-to, prefetch 16 (the default until 2026-11-28)",
    "reliable-prefetch32": "variant: reliable, prefetch 32 (the default until 2026-12-02)",
    "direct-prefetch32": "variant: direct reply-to, prefetch 32 (the default until 2026-12-02)",
    "reliable-prefetch64": "variant: reliable, prefetch 64",
    "direct-prefetch64": "variant: direct reply-to, prefetch 64",
    "reliable-classic-queue": "variant: reliable, classic request queue",
    "celery": "peer: Celery 5.7, rpc:// backend, threads pool of 8",
    "nameko": "peer: nameko 2.14 RPC, 8 workers",
    "aio-pika": "peer: aio-pika 10.2 JsonRPC pattern",
}
#: The systems the issue's targets are about (the rest are --variants).
MAIN_SYSTEMS = ("burrow-reliable", "burrow-direct", "baseline", httpbench.HTTP_API, "celery", "nameko", "aio-pika")
#: Quantiles kept per latency distribution for the CDF plot.
CDF_POINTS = 200


def latency_summary(latencies: list[float]) -> dict[str, Any]:
    """p50/p90/p99/max in milliseconds plus a CDF of ``CDF_POINTS`` quantiles."""
    ordered = sorted(latencies)
    summary: dict[str, Any] = {"n": len(ordered)}
    for name, fraction in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0)):
        summary[f"{name}_ms"] = round(percentile(ordered, fraction) * 1000, 3)
    summary["cdf_ms"] = [round(percentile(ordered, (i + 1) / CDF_POINTS) * 1000, 4) for i in range(CDF_POINTS)] if ordered else []
    return summary


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    """The published form of a run: throughput medians, latency summaries, RSS, targets."""
    systems = list(raw["throughput"])
    throughput: dict[str, Any] = {}
    for name in systems:
        throughput[name] = {}
        for level, runs in raw["throughput"][name].items():
            rates = [r["ok"] / r["elapsed"] for r in runs]
            throughput[name][level] = {
                "median_rps": round(statistics.median(rates), 1),
                "rounds_rps": [round(rate, 1) for rate in rates],
                "requests": [r["ok"] for r in runs],
                "failed": sum(r["failed"] for r in runs),
                "cpu_ms_per_request": {role: round(statistics.median(r["cpu_ms_per_request"][role] for r in runs), 4)
                                       for role in runs[0].get("cpu_ms_per_request", {})},
                "latency": {k: v for k, v in latency_summary([x for r in runs for x in r["latencies"]]).items() if k != "cdf_ms"},
            }
    ceiling_rates = [c["rate"] for c in raw["ceiling"]]
    ceiling = {
        "one_way_msgs_per_s": round(statistics.median(ceiling_rates), 1),
        "rounds_msgs_per_s": [round(rate, 1) for rate in ceiling_rates],
        "rpc_ceiling_rps": round(statistics.median(ceiling_rates) / 2, 1),
    }
    if all("cpu_ms_per_message" in c for c in raw["ceiling"]):
        ceiling["cpu_ms_per_message"] = {role: round(statistics.median(c["cpu_ms_per_message"][role] for c in raw["ceiling"]), 4)
                                         for role in raw["ceiling"][0]["cpu_ms_per_message"]}
    floor_runs = raw.get("floor", [])
    floor = None
    if floor_runs:
        floor = {
            "rounds_rps": [round(r["ok"] / r["elapsed"], 1) for r in floor_runs],
            "failed": sum(r["failed"] for r in floor_runs),
            "cpu_ms_per_request": {role: round(statistics.median(r["cpu_ms_per_request"][role] for r in floor_runs), 4)
                                   for role in floor_runs[0]["cpu_ms_per_request"]},
            **latency_summary([x for r in floor_runs for x in r["latencies"]]),
        }
    levels = list(raw["throughput"][systems[0]])
    lowest = min(levels, key=int)
    latency_c1 = {name: latency_summary([x for r in raw["throughput"][name][lowest] for x in r["latencies"]]) for name in systems}
    fixed_rate, same_rate, target_rate = ({name: _rate_summary(result) for name, result in raw.get(kind, {}).items()}
                                          for kind in ("fixed_rate", "same_rate", "target_rate"))
    peaks = {name: max(v["median_rps"] for v in throughput[name].values()) for name in systems}
    summary = {
        "started": raw["started"],
        "finished": raw.get("finished"),
        "note": raw["note"],
        "machine": raw["machine"],
        "settings": raw["settings"],
        "loadavg_before": raw["loadavg_before"],
        "loadavg_after": raw.get("loadavg_after"),
        "speed_probe_ms": raw.get("speed_probe_ms"),
        "throughput": throughput,
        "peak_rps": peaks,
        "ceiling": ceiling,
        "floor": floor,
        "latency_c1": latency_c1,
        "fixed_rate": fixed_rate,
        "same_rate": same_rate,
        "target_rate": target_rate,
        "rss": raw["rss"],
        "http_api": _http_api_summary(raw.get("http_api")),
        "async_handlers": asyncbench.summarise(raw.get("async_handlers")),
        "profiles": raw.get("profiles", {}),
    }
    summary["targets"] = targets.evaluate(summary)
    return summary


def _http_api_summary(extras: dict[str, Any] | None) -> dict[str, Any] | None:
    if not extras:
        return None
    return {**extras, "rate": {name: _rate_summary(result) for name, result in extras["rate"].items()}}


def _rate_summary(result: dict[str, Any]) -> dict[str, Any]:
    return {"rate_rps": round(result["rate"], 1), "sent": result["sent"], "failed": result["failed"],
            "cores_busy": round(result["cores_busy"], 2), "cpu_ms_per_request": result["cpu_ms_per_request"],
            **latency_summary(result["latencies"])}


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def markdown(summary: dict[str, Any]) -> str:
    """The results table, the targets and the conditions, as markdown."""
    machine = summary["machine"]
    settings = summary["settings"]
    levels = list(next(iter(summary["throughput"].values())))
    lines = [
        f"Measured {summary['started']} ({settings['mode']} run, {settings['rounds']} interleaved rounds) on "
        f"{machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, {machine['os']}, "
        f"RabbitMQ {machine['rabbitmq']} (Erlang {machine['erlang']}), Python {machine['python']}, pika {machine['pika']}. "
        f"Load average before/after: {summary['loadavg_before'][0]:.2f}/{(summary['loadavg_after'] or [0])[0]:.2f}; "
        f"{summary['note']}.",
        "",
        "| system | " + " | ".join(f"req/s at {c} in flight" for c in levels)
        + " | p50 / p90 / p99 / max at 1 in flight (ms) | p50 / p99 / max at half peak (ms), CPU of producer + consumer + broker | producer RSS (MiB) | consumer RSS (MiB) "
        + f"| CPU ms per request at {levels[-1]} in flight: producer / consumer / broker |",
        "|---" * (len(levels) + 6) + "|",
    ]
    for name, per_level in summary["throughput"].items():
        c1 = summary["latency_c1"][name]
        fixed = summary["fixed_rate"].get(name)
        memory = summary["rss"].get(name)
        cells = [LABELS.get(name, name)]
        cells += [f"{per_level[c]['median_rps']:.0f}" for c in levels]
        cells.append(f"{c1['p50_ms']:.2f} / {c1['p90_ms']:.2f} / {c1['p99_ms']:.2f} / {c1['max_ms']:.1f}")
        cells.append(f"{fixed['p50_ms']:.2f} / {fixed['p99_ms']:.2f} / {fixed['max_ms']:.1f} at {fixed['rate_rps']:.0f} req/s, "
                     f"{fixed['cores_busy']:.2f} of {machine['cores']} cores busy" if fixed else "-")
        for role in ("producer", "consumer"):
            cells.append(f"{_mib(memory['first'][role + '_kib'])} -> {_mib(memory['last'][role + '_kib'])}" if memory else "-")
        cpu = per_level[levels[-1]]["cpu_ms_per_request"]
        cells.append(" / ".join(f"{cpu[role]:.3f}" for role in ("producer", "consumer", "broker")) if cpu else "-")
        lines.append("| " + " | ".join(cells) + " |")
    ceiling = summary["ceiling"]
    first_rss = next(iter(summary["rss"].values()), None)
    lines += [
        "",
        f"Broker ceiling for pika (one-way publish -> consume, transient, no confirms, auto-ack): "
        f"{ceiling['one_way_msgs_per_s']:.0f} msg/s, so an RPC ceiling of {ceiling['rpc_ceiling_rps']:.0f} req/s. "
        f"Throughput is the median of the rounds; RSS after {first_rss['first']['requests'] if first_rss else '?'} -> "
        f"{first_rss['last']['requests'] if first_rss else '?'} requests at {settings['rss_concurrency']} in flight.",
    ]
    same_rate = summary.get("same_rate")
    if same_rate:
        rate = next(iter(same_rate.values()))["rate_rps"]
        lines += ["", f"Every system at one common rate, the lowest half peak ({rate:.0f} req/s), latency in ms:", "",
                  "| system | p50 | p90 | p99 | max | cores busy |", "|---|---|---|---|---|---|"]
        lines += [f"| {LABELS.get(name, name)} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | "
                  f"{r['cores_busy']:.2f} of {machine['cores']} |" for name, r in same_rate.items()]
    floor = summary.get("floor")
    if floor:
        cpu = floor["cpu_ms_per_request"]
        lines += [
            "",
            f"Floor at 1 in flight with reliable mode's guarantees (pika, one thread per side, quorum request queue, "
            f"persistent and confirmed request and reply, request acked after the reply's confirm, reply acked): "
            f"p50 / p90 / p99 / max {floor['p50_ms']:.2f} / {floor['p90_ms']:.2f} / {floor['p99_ms']:.2f} / "
            f"{floor['max_ms']:.1f} ms; CPU ms per request: client {cpu['producer']:.3f}, server {cpu['consumer']:.3f}, "
            f"broker {cpu['broker']:.3f}.",
        ]
    lines += httpbench.markdown_lines(summary, LABELS)
    lines += asyncbench.markdown_lines(summary)
    lines += ["", targets.table(summary["targets"]).rstrip("\n")]
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> None:
    """Throughput vs concurrency (with the RPC ceiling) and latency CDFs, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    colours = {"burrow-reliable": "tab:blue", "burrow-direct": "tab:green", "baseline": "tab:red",
               "celery": "tab:orange", "nameko": "tab:gray", "aio-pika": "gold", httpbench.HTTP_API: "magenta",
               "reliable-prefetch16": "tab:cyan", "direct-prefetch16": "tab:pink",
               "reliable-prefetch32": "darkviolet", "direct-prefetch32": "darkkhaki",
               "reliable-prefetch64": "tab:purple", "direct-prefetch64": "tab:olive", "reliable-classic-queue": "tab:brown"}
    for name, per_level in summary["throughput"].items():
        levels = sorted(per_level, key=int)
        left.plot([int(c) for c in levels], [per_level[c]["median_rps"] for c in levels], marker="o",
                  color=colours.get(name), linestyle="--" if name not in MAIN_SYSTEMS else "-", label=LABELS.get(name, name))
    left.axhline(summary["ceiling"]["rpc_ceiling_rps"], color="grey", linestyle="--",
                 label=f"RPC ceiling (pika one-way / 2): {summary['ceiling']['rpc_ceiling_rps']:.0f}")
    left.set_xscale("log", base=2)
    left.set_xlabel("requests in flight")
    left.set_ylabel("requests per second (median of rounds)")
    left.set_title("Throughput vs concurrency (100-byte echo)")
    left.set_ylim(bottom=0)
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    # Latency of the three main systems only: the variants' curves would hide them (their
    # throughput is on the left, their numbers in the table).
    for name, c1 in summary["latency_c1"].items():
        if name not in MAIN_SYSTEMS:
            continue
        fractions = [(i + 1) / len(c1["cdf_ms"]) for i in range(len(c1["cdf_ms"]))]
        right.plot(c1["cdf_ms"], fractions, color=colours.get(name), linewidth=1.6, label=f"{LABELS.get(name, name)}, 1 in flight")
        fixed = summary["fixed_rate"].get(name)
        if fixed and fixed["cdf_ms"]:
            right.plot(fixed["cdf_ms"], fractions[: len(fixed["cdf_ms"])], color=colours.get(name), linestyle=":",
                       label=f"{LABELS.get(name, name)}, {fixed['rate_rps']:.0f} req/s (half peak)")
    floor = summary.get("floor")
    if floor and floor["cdf_ms"]:
        right.plot(floor["cdf_ms"], [(i + 1) / len(floor["cdf_ms"]) for i in range(len(floor["cdf_ms"]))], color="black",
                   linestyle="-.", label="floor: pika with reliable mode's guarantees, 1 in flight")
    right.set_xscale("log")
    right.set_xlabel("latency (ms, log scale)")
    right.set_ylabel("fraction of requests")
    right.set_title("Latency CDF")
    right.grid(True, alpha=0.3, which="both")
    right.legend(fontsize=8, loc="lower right")
    figure.suptitle(f"burrow benchmark {summary['started']} ({summary['machine']['cores']} cores, shared machine)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(summary: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write results.json, results.md and results.png into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md", "png": out_dir / "results.png"}
    paths["json"].write_text(json.dumps(summary, indent=1) + "\n")
    paths["markdown"].write_text(markdown(summary))
    plot(summary, paths["png"])
    return paths
