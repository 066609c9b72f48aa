"""Jepsen-style load and count for the fault tests: drive a steady request load, break something,
then count, by request, what every caller and every handler saw.

Only what lies outside the code under test is counted:

- the **caller's side**: every request a load submitted, with what its caller got back (the right
  reply, a clear refusal, a timeout, someone else's reply, or nothing at all): :class:`Outcome`;
- the **handlers' side**: every handler run with its body, its ``redelivered`` flag and its
  correlation id (:class:`HandlerLog`, from the handler itself or from a record file a consumer
  process appends to);
- the **producer's public record of republishes**: the DEBUG record
  ``burrow.producer.REPUBLISHED_MESSAGE`` it logs, with ``CORRELATION_ID``, for each request it
  publishes again after a reconnect (:class:`RepublishLog`, from a logging handler in-process or
  from a daemon's log file).

The callers' outcomes come from loads.Load (library callers) or daemonload.HttpLoad (HTTP
clients). :func:`count` reduces them to a :class:`Tally`. Per request, each handler run after the first must
be explained by that request's own ``redelivered`` flag or by a republish of that same request;
each other run is an **unexplained duplicate**, named in ``problems``. A request counts as:

- ``answered``: the caller got exactly the reply the handler makes of its body;
- ``failed_503``: the caller got a clear refusal (broker unreachable, busy: HTTP 503);
- ``failed_504``: the caller got a timeout (HTTP 504);
- ``refused``: the caller's connection to the producer daemon was refused or its socket was gone;
- ``lost``: the caller got nothing, or an error nobody should see, or a 503/504 that
  explain.py could not explain for that request (outside every outage window, before its
  deadline, or never run, not dead-lettered and confirmed by the broker);
- ``unexpected``: the caller got a reply that is not its own, or a reply no handler made;
- ``recovered_from_queue`` / ``died_with_caller`` (producer-restart only): the caller was killed;
  its reply waited in the old instance's reply queue, or the broker never confirmed its request.

In-process scenarios pass with everything answered; scenarios through the HTTP API may answer 503
or 504 while the broker is away (``allow_errors``), each explained per request id, and pass with
0 lost, 0 refused, 0 unexpected, 0 unexplained duplicates and no HTTP client given two answers.
Fields a scenario does not measure stay None and are left out of its tally (the report prints
"n/a"). Each test declares its run first (:func:`begin_scenario`), so that its tally is written
whatever happens (tests/support/tallies.py); scripts/render_reliability.py renders
docs/reliability.md from them.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import re
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest

from burrow.errors import Backpressure, BrokerUnavailable, PublishError, RequestTimeout
from burrow.handlers import RequestContext
from burrow.producer import REPUBLISHED_MESSAGE
from burrow.tools.localbroker import LocalBroker
from explain import Outcome  # tests/support
from tallies import ScenarioRun  # tests/support
from waiting import wait_for

logger = logging.getLogger(__name__)

REPLY_PREFIX = b"Consumer processed: "
#: Exceptions a caller of the library gets where the HTTP API answers 503 (see burrow.daemon.http.app).
REFUSALS = (Backpressure, BrokerUnavailable, PublishError)
#: A daemon's stderr line for one republished request (burrow.daemon.journal.StderrFormatter).
REPUBLISHED_LINE = re.compile(r" burrow\.producer: " + re.escape(REPUBLISHED_MESSAGE) + r" \[.*?CORRELATION_ID=(\S+?)[\] ]")


def expected_reply(body: bytes) -> bytes:
    """What ``burrow.handlers:echo`` and the test handlers answer for ``body``."""
    return REPLY_PREFIX + body


@dataclasses.dataclass(frozen=True)
class Run:
    """One handler invocation."""

    body: bytes
    redelivered: bool
    correlation_id: str


class HandlerLog:
    """Every handler invocation, from memory or from a record file.

    In-process consumers use :meth:`handler` or, for an ``async def`` handler, :meth:`async_handler`
    (optionally slowed by ``delay`` seconds, awaited by the async one); consumer
    processes run ``burrow_test_handlers:record`` with ``BURROW_TEST_RECORD`` pointing at ``path``,
    which appends ``"<body> <0|1> <correlation id>"`` lines.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._runs: list[Run] = []

    def handler(self, delay: float = 0.0) -> Callable[[bytes, RequestContext], bytes]:
        def handle(body: bytes, context: RequestContext) -> bytes:
            if delay:
                time.sleep(delay)
            self._record(body, context)
            return expected_reply(body)

        return handle

    def async_handler(self, delay: float = 0.0) -> Callable[[bytes, RequestContext], Any]:
        async def handle(body: bytes, context: RequestContext) -> bytes:
            if delay:
                await asyncio.sleep(delay)
            self._record(body, context)
            return expected_reply(body)

        return handle

    def _record(self, body: bytes, context: RequestContext) -> None:
        with self._lock:
            self._runs.append(Run(body, context.redelivered, context.correlation_id))

    def runs(self) -> list[Run]:
        with self._lock:
            runs = list(self._runs)
        if self.path is not None and self.path.exists():
            for line in self.path.read_text().splitlines():
                fields = line.split(" ")
                if len(fields) == 3 and fields[1] in ("0", "1"):
                    runs.append(Run(fields[0].encode(), fields[1] == "1", fields[2]))
        return runs


class RepublishLog(logging.Handler):
    """The correlation ids the producer logged as republished (its public DEBUG record).

    Use :meth:`attach` around an in-process scenario, or :meth:`read_daemon_log` for a
    ``burrow-producer`` running with ``logging.level = "debug"``.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.ids: collections.Counter[str] = collections.Counter()
        self._lock_ids = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "burrow.producer" and record.msg == REPUBLISHED_MESSAGE:
            with self._lock_ids:
                self.ids[getattr(record, "CORRELATION_ID", "-")] += 1

    @classmethod
    def attach(cls) -> Iterator["RepublishLog"]:
        """Yield a log that records republishes until the generator is closed (a fixture body)."""
        log = cls()
        producer_logger = logging.getLogger("burrow.producer")
        level = producer_logger.level
        producer_logger.addHandler(log)
        producer_logger.setLevel(logging.DEBUG)
        try:
            yield log
        finally:
            producer_logger.removeHandler(log)
            producer_logger.setLevel(level)

    def read_daemon_log(self, path: Path) -> "RepublishLog":
        """Add the republishes a producer daemon wrote to its stderr log at ``path``."""
        if path.exists():
            for match in REPUBLISHED_LINE.finditer(path.read_text(errors="replace")):
                self.ids[match.group(1)] += 1
        return self

    def counts(self) -> collections.Counter[str]:
        with self._lock_ids:
            return collections.Counter(self.ids)


@pytest.fixture
def republished() -> Iterator[RepublishLog]:
    """Record every request the in-process producers republish during the test."""
    yield from RepublishLog.attach()


def future_outcome(body: bytes, future: Future) -> Outcome:
    """Classify a library caller's future the way the HTTP API maps it to a status code."""
    if not future.done():
        return Outcome(body, "lost", 0, "unresolved")
    error = future.exception()
    if error is None:
        reply = future.result()
        if reply == expected_reply(body):
            return Outcome(body, "answered")
        return Outcome(body, "unexpected", detail=f"got {reply[:60]!r}")
    if isinstance(error, RequestTimeout):
        return Outcome(body, "504", detail=str(error), confirmed=error.confirmed)
    if isinstance(error, REFUSALS):
        return Outcome(body, "503", detail=f"{type(error).__name__}: {error}")
    return Outcome(body, "lost", detail=f"{type(error).__name__}: {error}")


#: Results of a killed caller's requests that are explained without a caller to tell (producer-restart).
CALLER_GONE = ("recovered", "died-with-caller")
#: Outcome results counted in a field of their own (anything else is ``lost``).
RESULT_FIELDS = {"answered": "answered", "503": "failed_503", "504": "failed_504", "refused": "refused",
                 "unexpected": "unexpected", "recovered": "recovered_from_queue",
                 "died-with-caller": "died_with_caller"}


@dataclasses.dataclass
class Tally:
    """The counts of one scenario run (see the module docstring for each field)."""

    scenario: str
    title: str
    sent: int = 0
    answered: int = 0
    failed_503: int = 0
    failed_504: int = 0
    refused: int = 0
    lost: int = 0
    unexpected: int = 0
    answered_twice: int = 0
    # Measured only where the scenario has the source (a handler log, the producer's republish
    # records or stats, a killed caller): None otherwise, and then absent from the saved tally.
    duplicates_explained: int | None = None
    duplicates_unexplained: int | None = None
    handler_runs: int | None = None
    redelivered_flagged: int | None = None
    republished: int | None = None
    duplicate_replies_dropped: int | None = None
    reconnects: int | None = None
    recovered_from_queue: int | None = None
    died_with_caller: int | None = None
    outage_windows: list[list[float | None]] | None = None
    duration_s: float = 0.0
    allow_errors: bool = False
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)
    #: One record per request that was not answered: its id, times and why (explain.py).
    non_answers: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad()

    def bad(self) -> dict[str, int]:
        names = ["lost", "refused", "unexpected", "answered_twice", "duplicates_unexplained"]
        if not self.allow_errors:
            names += ["failed_503", "failed_504"]
        return {name: getattr(self, name) for name in names if getattr(self, name)}

    def document(self) -> dict[str, Any]:
        """The tally as saved: the measured fields only, the first 50 problems, ``ok``."""
        document = {key: value for key, value in dataclasses.asdict(self).items() if value is not None}
        document["problems"] = self.problems[:50]
        document["ok"] = self.ok
        return document

    def reason(self) -> str | None:
        """Why these counts fail the scenario, or None."""
        bad = self.bad()
        return f"{bad}; first problems: {self.problems[:3]}" if bad else None

    def check(self) -> None:
        """Fail the test with every non-zero bad count (after the tally was saved)."""
        bad = self.bad()
        assert not bad, f"{self.scenario}: {bad}; problems: {self.problems[:10]}; tally: {self}"


def nodeid_for_make(nodeid: str) -> str:
    """The pytest node id as a path relative to the repository (what ``make faults`` passes)."""
    return nodeid if nodeid.startswith("tests/") else f"tests/faults/{nodeid}"


def count(tally: Tally, outcomes: Iterable[Outcome], runs: Iterable[Run] | None,
          republished: collections.Counter[str] | None = None) -> Tally:
    """Fill ``tally`` from the callers' outcomes, the handler runs and the recorded republishes.

    ``runs`` of bodies no caller sent are ignored (other traffic on the queue); ``runs=None``
    skips the handler side (for scenarios without a handler log) and ``republished=None`` the
    republish count: those fields then stay unmeasured.
    """
    outcomes = list(outcomes)
    own = {outcome.body for outcome in outcomes}
    tally.sent += len(outcomes)
    for outcome in outcomes:
        field = RESULT_FIELDS.get(outcome.result, "lost")
        setattr(tally, field, (getattr(tally, field) or 0) + 1)
        if outcome.answers > 1:
            tally.answered_twice += 1
            tally.problems.append(f"{outcome.body!r} got {outcome.answers} answers")
        if outcome.result != "answered" and outcome.result not in CALLER_GONE:
            tally.problems.append(f"{outcome.body!r}: {outcome.result} {outcome.detail}".rstrip())
    if republished is not None:
        tally.republished = sum(republished.values())
    if runs is None:
        return tally
    republished = republished or collections.Counter()
    by_body: dict[bytes, list[Run]] = collections.defaultdict(list)
    for run in runs:
        if run.body in own:
            by_body[run.body].append(run)
    tally.handler_runs = sum(len(body_runs) for body_runs in by_body.values())
    tally.redelivered_flagged = sum(run.redelivered for body_runs in by_body.values() for run in body_runs)
    tally.duplicates_explained = tally.duplicates_unexplained = 0
    for body, body_runs in by_body.items():
        unflagged = sum(not run.redelivered for run in body_runs)
        copies = sum(republished[cid] for cid in {run.correlation_id for run in body_runs})
        # The first unflagged run is the request's own; each further one needs a republish of it.
        unexplained = max(0, unflagged - 1 - copies)
        tally.duplicates_explained += len(body_runs) - 1 - unexplained
        tally.duplicates_unexplained += unexplained
        if unexplained:
            tally.problems.append(f"{body!r} ran {len(body_runs)} times, {unflagged} unflagged, "
                                  f"republished {copies} times: {unexplained} unexplained")
    for outcome in outcomes:
        if outcome.result != "answered" and outcome.result not in CALLER_GONE:
            tally.problems.append(f"{outcome.body!r} ran {len(by_body.get(outcome.body, []))} times in handlers "
                                  f"(redelivered: {[run.redelivered for run in by_body.get(outcome.body, [])]})")
    answered_unprocessed = [o.body for o in outcomes if o.result == "answered" and o.body not in by_body]
    if answered_unprocessed:
        tally.unexpected += len(answered_unprocessed)
        tally.problems.append(f"{len(answered_unprocessed)} answered without a handler run, e.g. {answered_unprocessed[0]!r}")
    return tally


def connection_pids(broker: LocalBroker, name: str) -> list[str]:
    """The broker-side pids of the client connections whose ``connection_name`` is ``name``."""
    result = broker.ctl("list_connections", "--quiet", "--no-table-headers", "pid", "client_properties")
    pids = []
    for line in result.stdout.splitlines():
        pid, _, properties = line.partition("\t")
        if f'"{name}"' in properties:
            pids.append(pid.strip())
    return pids


def close_connections(broker: LocalBroker, name: str, expect: int) -> None:
    """``rabbitmqctl close_connection`` every connection named ``name`` (there must be ``expect``)."""
    wait_for(lambda: len(connection_pids(broker, name)) >= expect, 20, f"{expect} connections named {name}")
    for pid in connection_pids(broker, name):
        broker.ctl("close_connection", pid, "fault test: closed by the operator")


#: The scenario run the current test declared, and the loads started since (counted if it dies).
_active: dict[str, Any] = {"run": None, "loads": []}


def begin_scenario(request: pytest.FixtureRequest, scenario: str, title: str) -> ScenarioRun:
    """Declare the test's counted run before anything can fail: from here on its tally is written
    whatever happens (tests/conftest.py ends the run with the test's verdict). If the test dies
    before :func:`finish_scenario`, the tally holds what the loads started since had counted, by
    id, with ``result: fail`` and the reason."""
    run = ScenarioRun(scenario, title, f"make faults FAULTS_ARGS='{nodeid_for_make(request.node.nodeid)}'")
    loads: list[Any] = []
    _active.update(run=run, loads=loads)

    def partial() -> dict[str, Any]:
        tally = Tally(scenario, title)
        return count(tally, [outcome for load in loads for outcome in load.outcomes()], None).document()

    run.partial = partial
    request.node.reliability_run = run
    return run


def watch(load: Any) -> None:
    """Count ``load`` (anything with ``outcomes()``) in the partial tally of the current run."""
    _active["loads"].append(load)


def finish_scenario(request: pytest.FixtureRequest, tally: Tally) -> None:
    """Save the tally (``result: fail`` with the reason when its counts fail), log it, then
    assert the pass criteria; the test's later assertions can still fail the run."""
    run: ScenarioRun = request.node.reliability_run
    run.save(tally.document(), tally.reason())
    logger.info("Scenario %s: %s", tally.scenario, tally)
    tally.check()
