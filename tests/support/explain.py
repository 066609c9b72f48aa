"""Each non-answer explained per request id, or counted lost.

A caller that got no reply got one of two honest answers, and each has a condition that can be
checked for that one request:

- **503** (the producer had no broker): the request's own span, from the moment its caller sent
  it to the moment the answer came back, must meet a window in which the producer had no broker
  connection. The windows come from the producer's own log: its ``Producer: connection to ...
  lost`` and ``Producer connected to ...`` records, in a daemon's stderr log
  (:func:`outage_windows`) or in its host's journal (:func:`journal_outage_windows`); a 503
  outside every window, or in a scenario that measured none, is unexplained.
- **504** (its deadline passed): the answer must come at or after the request's deadline. A 504
  whose request never ran in any handler must moreover be found in the dead-letter queue by its
  correlation id (:func:`dead_letters`), with the broker's reason (``expired``, ``rejected``,
  ``delivery_limit``), or say that the broker never confirmed it (``RequestTimeout.confirmed``,
  the HTTP answer's ``"confirmed": false``): a broker that could not take it, such as a node cut
  off from its cluster, never accepted it. One the broker confirmed that is nowhere is a request
  the broker or the producer dropped.

A **refused** connection (nothing listening on the producer's socket) is never explained here:
no scenario through the HTTP API breaks the producer daemon, so a refused request there means
the producer died, and the scenario fails (faultcheck.Tally.bad, the cluster's tally).

Shared by the loopback fault scenarios (tests/faults) and the nspawn cluster scenarios
(tests/system/test_cluster.py), which both describe each request as an :class:`Outcome`.

:func:`explain` turns every unexplained 503/504 into ``lost`` with the reason, and returns one
record per non-answer for the tally (``non_answers``), so the report can say of each id why.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
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
#: The logger of the producer's connection records, and the two records that open and close a window.
SETUP_LOGGER = "burrow.amqp.setup"
LOST_MESSAGE = r"Producer: connection to \S+ lost"
CONNECTED_MESSAGE = r"Producer connected to "
_STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ " + re.escape(SETUP_LOGGER) + ": "
LOST_LINE = re.compile(_STAMP + LOST_MESSAGE, re.MULTILINE)
CONNECTED_LINE = re.compile(_STAMP + CONNECTED_MESSAGE, re.MULTILINE)


@dataclasses.dataclass
class Outcome:
    """What one caller got for one request: ``answered``, ``503``, ``504``, ``refused``, ``lost``,
    ``unexpected`` (or, in producer-restart, ``recovered`` and ``died-with-caller``); ``answers``
    counts the answers it received (an HTTP client reads on to EOF). The times (UNIX seconds),
    the request's own timeout, the correlation id the producer gave it and, for a 504, whether
    the broker had confirmed the request (``confirmed``; None: not said) are what :func:`explain`
    needs to explain a 503 or 504."""

    body: bytes
    result: str
    answers: int = 1
    detail: str = ""
    sent_at: float | None = None
    done_at: float | None = None
    timeout: float | None = None
    correlation_id: str = ""
    confirmed: bool | None = None


def said_confirmed(reply: bytes | str) -> bool | None:
    """A 504's ``"confirmed"``: whether the broker had confirmed the request (None: not said, as in
    a dead-lettered ``stale`` answer or one that is not JSON)."""
    try:
        document = json.loads(reply)
    except ValueError:
        return None
    confirmed = document.get("confirmed") if isinstance(document, dict) else None
    return confirmed if isinstance(confirmed, bool) else None


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
    """The windows without a broker connection in a producer daemon's stderr log."""
    return _windows([(_stamp(m.group(1)), "lost") for m in LOST_LINE.finditer(log_text)]
                    + [(_stamp(m.group(1)), "connected") for m in CONNECTED_LINE.finditer(log_text)])


def journal_outage_windows(entries: Iterable[dict[str, Any]]) -> list[Window]:
    """The windows without a broker connection in a producer daemon's journal records
    (``journalctl -o json``: the time journald received each, its ``LOGGER`` and ``MESSAGE``)."""
    events = []
    for entry in entries:
        message = entry.get("MESSAGE")
        if entry.get("LOGGER") != SETUP_LOGGER or not isinstance(message, str):
            continue
        at = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        if re.match(LOST_MESSAGE, message):
            events.append((at, "lost"))
        elif re.match(CONNECTED_MESSAGE, message):
            events.append((at, "connected"))
    return _windows(events)


def _windows(events: list[tuple[float, str]]) -> list[Window]:
    """Each window from a lost connection to the next connection (one never regained runs to the end)."""
    events.sort()
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


def dead_letters(broker: str | pika.ConnectionParameters, queue: str) -> dict[str, str]:
    """Every dead letter in ``queue`` by correlation id, with the broker's first death reason:
    read without an ack on a connection of its own, whose close puts them all back (as ``burrow
    dead list`` does), so that the lookup takes none away. ``broker``: an AMQP URL, or connection
    parameters (whose repr names no password) for a user that may read ``queue``."""
    parameters = pika.URLParameters(broker) if isinstance(broker, str) else broker
    connection = pika.BlockingConnection(parameters)
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


def explain(outcomes: Iterable[Outcome], ran: set[bytes], windows: list[Window] | None,
            dead: dict[str, str] | None) -> tuple[list[Outcome], list[dict[str, Any]]]:
    """The outcomes with every unexplained 503/504 turned into ``lost``, and one record per
    non-answer (id, result, times, correlation id, ``why`` in words and ``explained_by``: one of
    the ``BY_*`` tags, None when lost) for the tally; a reply recovered from a killed
    caller's queue is counted, not listed.

    ``ran``: the bodies that ran in a handler at least once; ``windows``: the producer's measured
    outage windows (None: not measured, so no 503 is explained); ``dead``: the dead-letter queue by
    correlation id (None: not read, so no 504 of a request that never ran is explained).
    """
    result: list[Outcome] = []
    records: list[dict[str, Any]] = []
    for outcome in outcomes:
        why = by = ""
        if outcome.result == "503":
            outcome, why, by = _explain_503(outcome, windows)
        elif outcome.result == "504":
            outcome, why, by = _explain_504(outcome, outcome.body in ran, dead)
        if outcome.result not in ("answered", "recovered"):
            records.append({"id": outcome.body.decode(errors="replace"), "result": outcome.result,
                            "sent_at": outcome.sent_at, "done_at": outcome.done_at,
                            "correlation_id": outcome.correlation_id or None,
                            "why": why or outcome.detail, "explained_by": by or None})
        result.append(outcome)
    return result, records


#: What explained a non-answer (a record's ``explained_by``; None: nothing, it is lost).
BY_WINDOW = "outage window"
BY_HANDLER = "ran in a handler"
BY_UNCONFIRMED = "never confirmed"
#: Followed by the broker's reason: ``dead-lettered: rejected``.
BY_DEAD_LETTER = "dead-lettered: "


def _lost(outcome: Outcome, why: str) -> tuple[Outcome, str, str]:
    return dataclasses.replace(outcome, result="lost", detail=f"{outcome.detail}; {why}".lstrip("; ")), why, ""


def _explain_503(outcome: Outcome, windows: list[Window] | None) -> tuple[Outcome, str, str]:
    if windows is None:
        return _lost(outcome, "503, but this scenario measured no outage window")
    if outcome.sent_at is None or outcome.done_at is None:
        return _lost(outcome, "503 without its times")
    for window in windows:
        if window.meets(outcome.sent_at, outcome.done_at):
            return outcome, f"503 inside the outage window {window.as_list()}", BY_WINDOW
    return _lost(outcome, f"503 at {outcome.done_at:.3f}, outside every outage window "
                          f"{[window.as_list() for window in windows]}")


def _explain_504(outcome: Outcome, ran: bool, dead: dict[str, str] | None) -> tuple[Outcome, str, str]:
    if outcome.sent_at is None or outcome.done_at is None or outcome.timeout is None:
        return _lost(outcome, "504 without its times or deadline")
    waited = outcome.done_at - outcome.sent_at
    if waited < outcome.timeout - DEADLINE_SLACK:
        return _lost(outcome, f"504 after {waited:.3f}s, before its {outcome.timeout:g}s deadline")
    late = f"504 after {waited:.3f}s (deadline {outcome.timeout:g}s)"
    if ran:
        return outcome, f"{late}; it ran in a handler", BY_HANDLER
    if dead is not None and outcome.correlation_id and outcome.correlation_id in dead:
        reason = dead[outcome.correlation_id]
        return outcome, f"{late}; never ran, dead-lettered as {reason}", BY_DEAD_LETTER + reason
    if outcome.confirmed is False:
        return outcome, f"{late}; never confirmed by the broker, never ran", BY_UNCONFIRMED
    where = "the dead-letter queue was not read" if dead is None else "not in the dead-letter queue"
    confirmed = "; the broker had confirmed it" if outcome.confirmed else ""
    return _lost(outcome, f"504 after {waited:.3f}s; never ran, {where} "
                          f"(correlation id {outcome.correlation_id or 'unknown'}){confirmed}")
