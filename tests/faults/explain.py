"""Each non-answer explained per request id, or counted lost.

A caller that got no reply got one of two honest answers, and each has a condition that can be
checked for that one request:

- **503** (the producer had no broker): the request's own span, from the moment its caller sent
  it to the moment the answer came back, must meet a window in which the producer had no broker
  connection. The windows come from the producer's own log (:func:`outage_windows`: its
  ``Producer: connection to ... lost`` and ``Producer connected to ...`` records); a 503 outside
  every window, or in a scenario that measured none, is unexplained.
- **504** (its deadline passed): the answer must come at or after the request's deadline. A 504
  whose request never ran in any handler must moreover be found in the dead-letter queue by its
  correlation id (:func:`dead_letters`), with the broker's reason (``expired``, ``rejected``,
  ``delivery_limit``), or say that the broker never confirmed it (``RequestTimeout.confirmed``,
  the HTTP answer's ``"confirmed": false``): a broker that could not take it, such as a node cut
  off from its cluster, never accepted it. One the broker confirmed that is nowhere is a request
  the broker or the producer dropped.

A **refused** connection (nothing listening on the producer's socket) is never explained here:
no scenario through the HTTP API breaks the producer daemon, so a refused request there means
the producer died, and the scenario fails (faultcheck.Tally.bad).

:func:`explain` turns every unexplained 503/504 into ``lost`` with the reason, and returns one
record per non-answer for the tally (``non_answers``), so the report can say of each id why.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from typing import Any, Iterable

import pika

from burrow.deadletters import death_summary

#: Seconds of slack around a measured window: the log line of a lost connection is written just
#: after the producer stops taking requests, and the line of a new connection a broker round trip
#: or two before it takes them again.
WINDOW_SLACK = 1.0
#: A deadline is published in whole milliseconds (truncated): a 504 may come up to 1 ms before
#: the caller's own timeout has passed by its clock.
DEADLINE_SLACK = 0.005
_STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ burrow\.amqp\.setup: "
LOST_LINE = re.compile(_STAMP + r"Producer: connection to \S+ lost", re.MULTILINE)
CONNECTED_LINE = re.compile(_STAMP + r"Producer connected to ", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class Window:
    """UNIX times between which the producer had no broker connection (``end`` None: to the end)."""

    start: float
    end: float | None

    def meets(self, start: float, end: float) -> bool:
        """Whether the span ``start``..``end`` overlaps this window (with :data:`WINDOW_SLACK`)."""
        last = float("inf") if self.end is None else self.end
        return start <= last + WINDOW_SLACK and end >= self.start - WINDOW_SLACK

    def as_list(self) -> list[float | None]:
        return [round(self.start, 3), None if self.end is None else round(self.end, 3)]


def _stamp(text: str) -> float:
    """A daemon's log time (local time, ``burrow.daemon.journal.StderrFormatter``) as UNIX time."""
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def outage_windows(log_text: str) -> list[Window]:
    """The windows without a broker connection in a producer daemon's stderr log: each from a
    lost connection to the next connection (a connection never regained runs to the end)."""
    events = sorted([(_stamp(m.group(1)), "lost") for m in LOST_LINE.finditer(log_text)]
                    + [(_stamp(m.group(1)), "connected") for m in CONNECTED_LINE.finditer(log_text)])
    windows: list[Window] = []
    down: float | None = None
    for at, event in events:
        if event == "lost" and down is None:
            down = at
        elif event == "connected" and down is not None:
            windows.append(Window(down, at))
            down = None
    if down is not None:
        windows.append(Window(down, None))
    return windows


def dead_letters(amqp_url: str, queue: str) -> dict[str, str]:
    """Every dead letter in ``queue`` by correlation id, with the broker's first death reason:
    read without an ack on a connection of its own, whose close puts them all back."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    found: dict[str, str] = {}
    try:
        channel = connection.channel()
        depth = channel.queue_declare(queue, passive=True).method.message_count
        if depth:
            channel.basic_qos(prefetch_count=min(depth, 65535))
            for method, properties, _body in channel.consume(queue, inactivity_timeout=2):
                if method is None:
                    break
                reason = death_summary(properties.headers or {})[0] or "-"
                found[properties.correlation_id or properties.message_id or "-"] = reason
                if len(found) >= depth:
                    break
    finally:
        connection.close()
    return found


def explain(outcomes: Iterable[Any], ran: set[bytes], windows: list[Window] | None,
            dead: dict[str, str] | None) -> tuple[list[Any], list[dict[str, Any]]]:
    """The outcomes with every unexplained 503/504 turned into ``lost``, and one record per
    non-answer (id, result, times, explanation) for the tally; a reply recovered from a killed
    caller's queue is counted, not listed.

    ``ran``: the bodies that ran in a handler at least once; ``windows``: the producer's measured
    outage windows (None: not measured, so no 503 is explained); ``dead``: the dead-letter queue by
    correlation id (None: not read, so no 504 of a request that never ran is explained).
    """
    result: list[Any] = []
    records: list[dict[str, Any]] = []
    for outcome in outcomes:
        why = ""
        if outcome.result == "503":
            outcome, why = _explain_503(outcome, windows)
        elif outcome.result == "504":
            outcome, why = _explain_504(outcome, outcome.body in ran, dead)
        if outcome.result not in ("answered", "recovered"):
            records.append({"id": outcome.body.decode(errors="replace"), "result": outcome.result,
                            "sent_at": outcome.sent_at, "done_at": outcome.done_at,
                            "correlation_id": outcome.correlation_id or None,
                            "why": why or outcome.detail})
        result.append(outcome)
    return result, records


def _lost(outcome: Any, why: str) -> tuple[Any, str]:
    return dataclasses.replace(outcome, result="lost", detail=f"{outcome.detail}; {why}".lstrip("; ")), why


def _explain_503(outcome: Any, windows: list[Window] | None) -> tuple[Any, str]:
    if windows is None:
        return _lost(outcome, "503, but this scenario measured no outage window")
    if outcome.sent_at is None or outcome.done_at is None:
        return _lost(outcome, "503 without its times")
    for window in windows:
        if window.meets(outcome.sent_at, outcome.done_at):
            return outcome, f"503 inside the outage window {window.as_list()}"
    return _lost(outcome, f"503 at {outcome.done_at:.3f}, outside every outage window "
                          f"{[window.as_list() for window in windows]}")


def _explain_504(outcome: Any, ran: bool, dead: dict[str, str] | None) -> tuple[Any, str]:
    if outcome.sent_at is None or outcome.done_at is None or outcome.timeout is None:
        return _lost(outcome, "504 without its times or deadline")
    waited = outcome.done_at - outcome.sent_at
    if waited < outcome.timeout - DEADLINE_SLACK:
        return _lost(outcome, f"504 after {waited:.3f}s, before its {outcome.timeout:g}s deadline")
    if ran:
        return outcome, f"504 after {waited:.3f}s (deadline {outcome.timeout:g}s); it ran in a handler"
    if dead is not None and outcome.correlation_id and outcome.correlation_id in dead:
        return outcome, (f"504 after {waited:.3f}s (deadline {outcome.timeout:g}s); never ran, dead-lettered "
                         f"as {dead[outcome.correlation_id]}")
    if outcome.confirmed is False:
        return outcome, (f"504 after {waited:.3f}s (deadline {outcome.timeout:g}s); never confirmed by the broker, "
                         "never ran")
    where = "the dead-letter queue was not read" if dead is None else "not in the dead-letter queue"
    confirmed = "; the broker had confirmed it" if outcome.confirmed else ""
    return _lost(outcome, f"504 after {waited:.3f}s; never ran, {where} "
                          f"(correlation id {outcome.correlation_id or 'unknown'}){confirmed}")
