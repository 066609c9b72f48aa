"""Jepsen-style load and count for the fault tests: drive a steady request load, break something,
then count what every caller and every handler saw.

A scenario runs a :class:`Load` through a :class:`CountingProducer` (a real ``Producer`` that also
notes which requests the broker confirmed), records every handler invocation (body and
``redelivered`` flag) with a :class:`HandlerLog`, and reduces both to a :class:`Tally`:

- ``sent``: requests submitted; ``confirmed``: requests the broker acked at least once;
- ``answered``: futures resolved with the right reply; ``unexpected``: futures resolved with a reply
  that belongs to another request, or an error nobody injected;
- ``lost``: confirmed but never answered; ``failed``: neither confirmed nor answered (the caller got
  an error for a request the broker never took);
- ``duplicated``: replies delivered to a caller more than once (futures must resolve once);
- ``redeliveries_unflagged``: handler runs of a body beyond its first that were *not* flagged
  ``redelivered`` and that publisher republishes do not explain.

A passing scenario has 0 lost, 0 failed, 0 duplicated, 0 unexpected and 0 unflagged redeliveries.
Each test saves its tally as JSON under ``BURROW_RELIABILITY_DIR`` (default
``build/reliability``); ``tests/faults/render_reliability.py`` turns those into
``docs/reliability.md``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pika
import pika.spec
import pytest

from burrow.config import BurrowConfig
from burrow.handlers import RequestContext
from burrow.tools.localbroker import LocalBroker
from burrow.producer import Producer

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
RESULTS_ENV = "BURROW_RELIABILITY_DIR"
REPLY_PREFIX = b"Consumer processed: "


def results_dir() -> Path:
    """Where scenario tallies go (created on first use)."""
    path = Path(os.environ.get(RESULTS_ENV) or REPO / "build" / "reliability")
    path.mkdir(parents=True, exist_ok=True)
    return path


def expected_reply(body: bytes) -> bytes:
    """What ``burrow.handlers:echo`` and the test handlers answer for ``body``."""
    return REPLY_PREFIX + body


class CountingProducer(Producer):
    """A real :class:`~burrow.producer.Producer` that also records which requests the broker acked.

    The broker's publisher confirm is the producer's promise that a request will not be lost, so
    the checker counts a request as ``lost`` only if it was confirmed and still never answered.
    """

    def __init__(self, config: BurrowConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.confirmed_ids: set[str] = set()

    def on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        if isinstance(method, pika.spec.Basic.Ack):
            for request in self._confirms.peek(method.delivery_tag, method.multiple):
                self.confirmed_ids.add(request.correlation_id)
        super().on_confirm(frame)


class HandlerLog:
    """Every handler invocation as ``(body, redelivered)``, from memory or from a record file.

    In-process consumers use :meth:`handler` (optionally slowed by ``delay`` seconds); consumer
    processes run ``burrow_test_handlers:record`` with ``BURROW_TEST_RECORD`` pointing at ``path``,
    which appends ``"<body> <0|1>"`` lines.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._runs: list[tuple[bytes, bool]] = []

    def handler(self, delay: float = 0.0) -> Callable[[bytes, RequestContext], bytes]:
        def handle(body: bytes, context: RequestContext) -> bytes:
            if delay:
                time.sleep(delay)
            with self._lock:
                self._runs.append((body, context.redelivered))
            return expected_reply(body)

        return handle

    def runs(self) -> list[tuple[bytes, bool]]:
        with self._lock:
            runs = list(self._runs)
        if self.path is not None and self.path.exists():
            for line in self.path.read_text().splitlines():
                body, _, flag = line.rpartition(" ")
                if body and flag in ("0", "1"):
                    runs.append((body.encode(), flag == "1"))
        return runs


@dataclasses.dataclass
class Tally:
    """The counts of one scenario run (see the module docstring for each field)."""

    scenario: str
    title: str
    sent: int = 0
    confirmed: int = 0
    answered: int = 0
    lost: int = 0
    failed: int = 0
    duplicated: int = 0
    unexpected: int = 0
    handler_runs: int = 0
    redelivered_flagged: int = 0
    redeliveries_unflagged: int = 0
    republished: int = 0
    duplicate_replies_dropped: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.failed or self.duplicated or self.unexpected or self.redeliveries_unflagged)

    def save(self, nodeid: str) -> Path:
        """Write this tally as JSON (with the command that reproduces it) for the report."""
        document = dataclasses.asdict(self)
        document["ok"] = self.ok
        document["nodeid"] = nodeid
        document["command"] = f"make faults FAULTS_ARGS='{nodeid_for_make(nodeid)}'"
        document["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        path = results_dir() / f"{self.scenario}.json"
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        return path

    def check(self) -> None:
        """Fail the test with every non-zero bad count (after the tally was saved)."""
        bad = {name: getattr(self, name) for name in ("lost", "failed", "duplicated", "unexpected", "redeliveries_unflagged")}
        bad = {name: value for name, value in bad.items() if value}
        assert not bad, f"{self.scenario}: {bad}; problems: {self.problems[:10]}; tally: {self}"


def nodeid_for_make(nodeid: str) -> str:
    """The pytest node id as a path relative to the repository (what ``make faults`` passes)."""
    return nodeid if nodeid.startswith("tests/") else f"tests/faults/{nodeid}"


class Load:
    """Submit ``count`` requests at up to ``rate`` per second with at most ``window`` unanswered.

    Bodies are ``<prefix>-<n>``; every future gets a done-callback that counts its resolutions, so a
    reply handed to a caller twice would show up as ``duplicated``. :meth:`start` runs the
    submitter in a thread so the test can break things while the load is running.
    """

    def __init__(self, producer: Producer, count: int, *, prefix: str, rate: float = 400.0, window: int = 200,
                 timeout: float = 120.0) -> None:
        self.producer = producer
        self.count = count
        self.prefix = prefix
        self.rate = rate
        self.window = threading.BoundedSemaphore(window)
        self.timeout = timeout
        self.futures: dict[bytes, Future] = {}
        self.resolutions: collections.Counter[bytes] = collections.Counter()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._submit_all, name=f"load-{prefix}", daemon=True)
        self.started = 0.0
        self.submit_errors: list[str] = []

    def bodies(self) -> Iterator[bytes]:
        return (f"{self.prefix}-{n}".encode() for n in range(self.count))

    def start(self) -> "Load":
        self.started = time.monotonic()
        self._thread.start()
        return self

    def _submit_all(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        for body in self.bodies():
            self.window.acquire()
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at = max(next_at + interval, time.monotonic() - 1.0)
            try:
                future = self.producer.submit(body, timeout=self.timeout)
            except Exception as exc:  # the caller's own view: a refused submit is a failed request
                self.submit_errors.append(f"{body!r}: {type(exc).__name__}: {exc}")
                self.window.release()
                continue
            with self._lock:
                self.futures[body] = future
            future.add_done_callback(lambda _f, b=body: self._resolved(b))

    def _resolved(self, body: bytes) -> None:
        with self._lock:
            self.resolutions[body] += 1
        self.window.release()

    def answered(self) -> int:
        with self._lock:
            return sum(1 for future in self.futures.values() if future.done() and future.exception() is None)

    def wait_answered(self, at_least: int, timeout: float) -> None:
        """Block until ``at_least`` replies arrived (the moment to inject the next fault)."""
        wait_for(lambda: self.answered() >= at_least, timeout, f"{at_least} answers of {self.prefix}")

    def finish(self, timeout: float) -> None:
        """Wait until every request was submitted and resolved (or fail naming how many are left)."""
        deadline = time.monotonic() + timeout
        self._thread.join(max(0.0, deadline - time.monotonic()))
        assert not self._thread.is_alive(), f"{self.prefix}: submitting did not finish within {timeout}s"
        for future in list(self.futures.values()):
            remaining = deadline - time.monotonic()
            try:
                future.exception(timeout=max(0.0, remaining))
            except TimeoutError:
                pending = sum(1 for f in self.futures.values() if not f.done())
                pytest.fail(f"{self.prefix}: {pending} requests still unresolved after {timeout}s")

    def tally(self, scenario: str, title: str, handler_log: HandlerLog | None,
              producers: Iterable[Producer] = (), extra_loads: Iterable["Load"] = ()) -> Tally:
        """Count this load (and ``extra_loads`` through other producers) against the handler log."""
        loads = [self, *extra_loads]
        tally = Tally(scenario=scenario, title=title, seconds=round(time.monotonic() - self.started, 1))
        all_producers = [self.producer, *producers]
        confirmed_ids: set[str] = set()
        for producer in all_producers:
            confirmed_ids |= getattr(producer, "confirmed_ids", set())
            stats = producer.stats()
            tally.republished += stats.republished
            tally.duplicate_replies_dropped += stats.duplicate_replies
            tally.reconnects += producer.reconnects
        bad_bodies: list[bytes] = []
        for load in loads:
            tally.sent += len(load.futures) + len(load.submit_errors)
            tally.failed += len(load.submit_errors)
            tally.problems += load.submit_errors
            for body, future in load.futures.items():
                confirmed = future.correlation_id in confirmed_ids
                tally.confirmed += confirmed
                if load.resolutions[body] > 1:
                    tally.duplicated += 1
                if not future.done():
                    tally.lost += confirmed
                    tally.failed += not confirmed
                    tally.problems.append(f"{body!r} unresolved")
                    bad_bodies.append(body)
                    continue
                error = future.exception()
                if error is None:
                    if future.result() == expected_reply(body):
                        tally.answered += 1
                    else:
                        tally.unexpected += 1
                        tally.problems.append(f"{body!r} got {future.result()[:60]!r}")
                    continue
                if confirmed:
                    tally.lost += 1
                else:
                    tally.failed += 1
                tally.problems.append(f"{body!r}: {type(error).__name__}: {error}")
                bad_bodies.append(body)
        if handler_log is not None:
            own = {body for load in loads for body in load.futures}
            runs = [(body, flagged) for body, flagged in handler_log.runs() if body in own]
            run_counts = collections.Counter(body for body, _ in runs)
            tally.problems += [f"{body!r} ran {run_counts[body]} times in handlers" for body in bad_bodies]
            tally.handler_runs = len(runs)
            tally.redelivered_flagged = sum(flagged for _, flagged in runs)
            unflagged = collections.Counter(body for body, flagged in runs if not flagged)
            # A body's first run is unflagged; more unflagged runs are copies the producer
            # republished after losing a confirm (at least once), or a redelivery without its flag.
            extra_unflagged = sum(count - 1 for count in unflagged.values() if count > 1)
            tally.notes["republished_copies_processed"] = extra_unflagged
            tally.redeliveries_unflagged = max(0, extra_unflagged - tally.republished)
            never_processed = [body for body in own if body not in {b for b, _ in runs}]
            answered_unprocessed = [b for b in never_processed
                                    if any(b in load.futures and load.futures[b].done()
                                           and load.futures[b].exception() is None for load in loads)]
            if answered_unprocessed:
                tally.unexpected += len(answered_unprocessed)
                tally.problems.append(f"{len(answered_unprocessed)} answered without a handler run")
        return tally


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until true; fail the test naming ``what`` after ``timeout`` seconds.

    The same as the suite's ``conftest.wait_for``, repeated because ``producer_child.py`` imports
    this module in a process that has no conftest on its path.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


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


def finish_scenario(request: pytest.FixtureRequest, tally: Tally) -> None:
    """Save the tally for the report, log it, then assert the pass criteria."""
    tally.save(request.node.nodeid)
    logger.info("Scenario %s: %s", tally.scenario, tally)
    tally.check()


@pytest.fixture
def counting_producer(start_producer: Callable[..., Any]) -> Callable[..., CountingProducer]:
    """Start :class:`CountingProducer` instances (closed at the end of the test)."""
    return functools.partial(start_producer, cls=CountingProducer)
