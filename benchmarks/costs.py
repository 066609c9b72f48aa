"""Where the CPU goes: the table under RESULTS.md's targets, from the same run file.

On the benchmark's machine every process of a measurement (caller, HTTP client, consumer, broker)
shares the same cores, so a rate is the cores the processes kept busy divided by the CPU one
request costs all of them: ``req/s = cores busy / (CPU ms per request / 1000)``. A ratio the
targets compare therefore splits exactly into two factors, and :func:`block` prints both:

- **CPU**: how much less (or more) CPU one request costs in the compared row than in the reference;
- **busy**: how many more (or fewer) cores its processes kept busy.

A target held back by the first factor needs less work per request; one held back by the second
needs the processes to wait less (deeper pipelines, fewer stalls). The RPC ceiling's row counts two
one-way messages per request. Rows and figures the run did not measure print "n/a".
"""

from __future__ import annotations

from typing import Any

from benchmarks.targets import CEILING_LEVEL, EQUAL_IN_FLIGHT, HTTP_API, LIBRARY


def _library(level: int | str) -> str:
    return f"library at {level} in flight"


def _api(level: int | str) -> str:
    return f"HTTP API at {level} connections"


CEILING_ROW = "RPC ceiling (2 one-way messages)"
#: (label, system, in-flight level) of each measured row, in table order: the levels at which the
#: targets hold the API against the library.
ROWS = tuple(row for level in EQUAL_IN_FLIGHT
             for row in ((_library(level), LIBRARY, str(level)), (_api(level), HTTP_API, str(level))))
#: The ratios the targets compare, as (what, row, reference row).
RATIOS = (
    *((f"HTTP API / library at {level}", _api(level), _library(level)) for level in EQUAL_IN_FLIGHT),
    (f"reliable at {CEILING_LEVEL} / RPC ceiling", _library(CEILING_LEVEL), CEILING_ROW),
)


def rows(summary: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """Per row: req/s, CPU ms per request by role (caller, client, consumer, broker) and in
    total, and cores busy; None for a row the run lacks."""
    found: dict[str, dict[str, Any] | None] = {}
    throughput = summary.get("throughput", {})
    for label, system, level in ROWS:
        row = throughput.get(system, {}).get(level)
        cpu = (row or {}).get("cpu_ms_per_request")
        if not row or not cpu:
            found[label] = None
            continue
        roles = {"caller": cpu.get("producer"), "client": cpu.get("client"), "consumer": cpu.get("consumer"),
                 "broker": cpu.get("broker")}
        found[label] = _with_totals(row["median_rps"], roles)
    ceiling = summary.get("ceiling") or {}
    per_message = ceiling.get("cpu_ms_per_message")
    if per_message and ceiling.get("rpc_ceiling_rps"):
        roles = {"caller": 2 * per_message["publisher"], "client": None, "consumer": 2 * per_message["consumer"],
                 "broker": 2 * per_message["broker"]}
        found[CEILING_ROW] = _with_totals(ceiling["rpc_ceiling_rps"], roles)
    else:
        found[CEILING_ROW] = None
    return found


def _with_totals(rate: float, roles: dict[str, float | None]) -> dict[str, Any]:
    total = sum(value for value in roles.values() if value is not None)
    return {"rps": rate, **roles, "total": total, "busy": rate * total / 1000}


def ratios(found: dict[str, dict[str, Any] | None]) -> list[tuple[str, float, float, float] | tuple[str, None, None, None]]:
    """Each compared ratio as (what, ratio, CPU factor, busy factor), or Nones when a row is missing."""
    out: list[tuple[str, float, float, float] | tuple[str, None, None, None]] = []
    for what, one, other in RATIOS:
        a, b = found.get(one), found.get(other)
        if not a or not b or not a["total"] or not b["busy"]:
            out.append((what, None, None, None))
            continue
        out.append((what, a["rps"] / b["rps"], b["total"] / a["total"], a["busy"] / b["busy"]))
    return out


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def block(summary: dict[str, Any]) -> str:
    """The markdown of the CPU table and the factors of each ratio."""
    found = rows(summary)
    lines = [
        "CPU milliseconds per answered request, by process (median over the rounds), and the cores "
        "those processes kept busy; each compared ratio split into its two factors (benchmarks/costs.py):",
        "",
        "| measurement | req/s | caller | HTTP client | consumer | broker | total | cores busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in [label for label, _, _ in ROWS] + [CEILING_ROW]:
        row = found.get(label)
        if row is None:
            lines.append(f"| {label} | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
            continue
        lines.append(f"| {label} | {row['rps']:.0f} | {_ms(row['caller'])} | {_ms(row['client'])} | "
                     f"{_ms(row['consumer'])} | {_ms(row['broker'])} | {row['total']:.3f} | {row['busy']:.2f} |")
    lines.append("")
    for what, ratio, cpu, busy in ratios(found):
        if ratio is None:
            lines.append(f"- {what}: n/a")
        else:
            lines.append(f"- {what}: {ratio:.2f} = {cpu:.2f} (CPU per request) x {busy:.2f} (cores busy)")
    return "\n".join(lines) + "\n"


__all__ = ["CEILING_ROW", "RATIOS", "ROWS", "block", "ratios", "rows"]
