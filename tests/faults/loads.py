"""The in-process load of the fault scenarios: a :class:`Load` submits a bounded, paced stream of
requests through a library :class:`~burrow.producer.Producer` while the test breaks something, and
keeps each request's outcome by body from the caller's side (faultcheck.py counts them). The HTTP
load of the daemon scenarios is daemonload.HttpLoad.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import Future
from typing import Iterable, Iterator

import pytest

from burrow.producer import Producer

from faultcheck import REFUSALS, HandlerLog, Outcome, RepublishLog, Tally, count, future_outcome, watch
from tallies import ScenarioRun
from waiting import wait_for


class Load:
    """Submit ``count`` requests at up to ``rate`` per second with at most ``window`` unanswered.

    Bodies are ``<prefix>-<n>``; :meth:`start` runs the submitter in a thread so the test can
    break things while the load is running. Every request is tracked by its body from the
    caller's side: the future ``submit`` returned, or the error ``submit`` raised.
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
        self.sent_at: dict[bytes, float] = {}
        self.done_at: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._submit_all, name=f"load-{prefix}", daemon=True)
        self.started = 0.0
        self.submit_errors: dict[bytes, BaseException] = {}
        self._stop = threading.Event()

    def bodies(self) -> Iterator[bytes]:
        return (f"{self.prefix}-{n}".encode() for n in range(self.count))

    def start(self) -> "Load":
        self.started = time.monotonic()
        watch(self)
        self._thread.start()
        return self

    def _submit_all(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        for body in self.bodies():
            self.window.acquire()
            if self._stop.is_set():
                self.window.release()
                return
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at = max(next_at + interval, time.monotonic() - 1.0)
            self.sent_at[body] = time.time()
            try:
                future = self.producer.submit(body, timeout=self.timeout)
            except Exception as exc:  # the caller's own view: a refused submit is a failed request
                self.submit_errors[body] = exc
                self.done_at[body] = time.time()
                self.window.release()
                continue
            with self._lock:
                self.futures[body] = future
            future.add_done_callback(lambda _f, b=body: self._resolved(b))

    def _resolved(self, body: bytes) -> None:
        self.done_at[body] = time.time()
        self.window.release()

    def stop(self) -> None:
        """Submit no more requests (those submitted are still counted): for loads that run until
        the scenario has seen enough after its fault, rather than for a fixed count."""
        self._stop.set()

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

    def outcomes(self) -> list[Outcome]:
        """Each request's outcome so far (one still unresolved is ``lost``, "unresolved")."""
        refused = [Outcome(body, "503" if isinstance(exc, REFUSALS) else "lost", detail=repr(exc))
                   for body, exc in self.submit_errors.items()]
        with self._lock:
            futures = [future_outcome(body, future) for body, future in self.futures.items()]
        return [dataclasses.replace(outcome, sent_at=self.sent_at.get(outcome.body),
                                    done_at=self.done_at.get(outcome.body), timeout=self.timeout)
                for outcome in refused + futures]

    def tally(self, run: ScenarioRun, handler_log: HandlerLog | None, republished: RepublishLog | None = None,
              producers: Iterable[Producer] = (), extra_loads: Iterable["Load"] = ()) -> Tally:
        """Count this load (and ``extra_loads``) against the handler log and recorded republishes;
        the producers' own stats only add the informational ``duplicate_replies_dropped`` and
        ``reconnects``."""
        loads = [self, *extra_loads]
        tally = Tally(scenario=run.scenario, title=run.title, duration_s=round(time.monotonic() - self.started, 1),
                      duplicate_replies_dropped=0, reconnects=0)
        for producer in {id(p): p for p in [*(load.producer for load in loads), *producers]}.values():
            tally.duplicate_replies_dropped += producer.stats().duplicate_replies
            tally.reconnects += producer.reconnects
        outcomes = [outcome for load in loads for outcome in load.outcomes()]
        return count(tally, outcomes, handler_log.runs() if handler_log else None,
                     republished.counts() if republished else None)
