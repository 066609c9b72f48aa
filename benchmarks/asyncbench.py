"""Async handler vs sync handler on the same I/O-bound work (issue 25).

Two more burrow systems, each a ``burrow-consumer`` on its own request queue with a library client
(reliable mode), whose handler waits 10 ms per request, as a call to a slow service would:
``async-handler`` awaits ``benchmarks.handlers:sleep_10ms`` on the consumer's one event loop with
``concurrency = 256``, ``sync-handler`` sleeps in ``benchmarks.handlers:sync_sleep_10ms`` in the
default pool of 8 worker threads.
:mod:`benchmarks.harness` drives both with :data:`IN_FLIGHT` requests in flight, alternating them
in every round like the main rows, after the main rows; :func:`summarise` keeps each one's median
req/s and their ratio (the baseline is the sync handler of the same run), :func:`markdown_lines`
reports them.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.handlers import WAIT_SECONDS

ASYNC_HANDLER = "async-handler"
SYNC_HANDLER = "sync-handler"
#: The systems in the order each round measures them.
SYSTEMS = (ASYNC_HANDLER, SYNC_HANDLER)
#: Requests in flight of every measurement.
IN_FLIGHT = 256

def summarise(runs: dict[str, list[dict[str, Any]]] | None) -> dict[str, Any] | None:
    """Each system's median req/s and consumer CPU per request over the rounds, and the ratio."""
    if not runs:
        return None
    systems = {name: {"median_rps": statistics.median(r["ok"] / r["elapsed"] for r in results),
                      "failed": sum(r["failed"] for r in results),
                      "consumer_cpu_ms": statistics.median(r["cpu_ms_per_request"]["consumer"] for r in results)}
               for name, results in runs.items() if results}
    ratio = None
    if ASYNC_HANDLER in systems and systems.get(SYNC_HANDLER, {}).get("median_rps"):
        ratio = systems[ASYNC_HANDLER]["median_rps"] / systems[SYNC_HANDLER]["median_rps"]
    return {"in_flight": IN_FLIGHT, "work_ms": WAIT_SECONDS * 1000, "systems": systems, "ratio": ratio}


def markdown_lines(summary: dict[str, Any]) -> list[str]:
    """The two rows and their ratio, or nothing when the run did not measure them."""
    handlers = summary.get("async_handlers")
    if not handlers:
        return []
    lines = ["", f"Handler waiting {handlers['work_ms']:.0f} ms per request (I/O-bound), {handlers['in_flight']} in flight "
             "(async: `async def`, concurrency 256, one event loop; sync: the default 8 worker threads):", "",
             "| handler | req/s | failed | consumer CPU ms per request |", "|---|---|---|---|"]
    for name, row in handlers["systems"].items():
        lines.append(f"| {name} | {row['median_rps']:.0f} | {row['failed']} | {row['consumer_cpu_ms']:.3f} |")
    ratio = handlers["ratio"]
    lines += ["", f"Async handler / sync handler throughput: {ratio:.1f}x." if ratio is not None else
              "Async handler / sync handler throughput: n/a."]
    return lines
