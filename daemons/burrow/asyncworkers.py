"""``AsyncHandlerPool``: coroutine handlers on the daemon's one event loop, ``workers`` awaited at once.

The interface of :class:`~burrow.workers.HandlerPool` (``submit``, ``resize``, ``shutdown``,
``workers``), so a service whose handler is ``async def`` gets this pool and everything else in the
consumer stays as it is. Jobs come from the I/O thread; each becomes a task on the shared loop
(:mod:`burrow.eventloop`) as soon as fewer than ``workers`` are running, else waits its turn in
arrival order. A task awaits the handler, turns its reply or exception into an
:class:`~burrow.protocol.Outcome` exactly as a worker thread does, and hands the job to ``on_done``,
which passes it to the I/O thread: no coroutine touches a channel, and the reply is still confirmed
before the request is acked.

The request's deadline bounds the coroutine: one still running then is cancelled, the cancellation
logged, and its outcome is the ``stale`` rejection, so the consumer tells the caller and
dead-letters the request as it does a request that arrived stale. A step of the handler that holds
the loop longer than ``blocking_threshold`` seconds (``consumer.blocking_warning``) is logged with the handler's name and how long it held
the loop (:class:`~burrow.eventloop.TimedSteps`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from typing import Any, Callable, Generic

from burrow import eventloop, tracing
from burrow.handlers import Handler
from burrow.protocol import REJECT_STALE, Outcome, Rejection, headers_deadline
from burrow.workers import J, failed, succeeded

logger = logging.getLogger(__name__)


class AsyncHandlerPool(Generic[J]):
    """Run the coroutine function ``handler`` (named ``handler_name`` in logs) on submitted jobs,
    at most ``workers`` at once, on the process's shared event loop."""

    def __init__(self, handler: Handler, handler_name: str, workers: int, *, include_traceback: bool,
                 on_done: Callable[[J], None], blocking_threshold: float, service: str = "default") -> None:
        self._handler: Callable[..., Any] = handler
        self._handler_name = handler_name
        self._include_traceback = include_traceback
        self._on_done = on_done
        self._blocking_threshold = blocking_threshold
        self._service = service
        self.workers = workers
        # Loop-thread state.
        self._waiting: collections.deque[J] = collections.deque()
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False
        self._loop = eventloop.acquire()

    def submit(self, job: J) -> None:
        """Any thread: start ``job`` on the loop, or queue it until a running one finishes."""
        self._loop.call_soon_threadsafe(self._admit, job)

    def resize(self, workers: int) -> None:
        """From now on ``workers`` run at once; more start at once if the limit went up, and when it
        went down running ones finish and no new one starts until they are under it."""
        self.workers = workers
        self._loop.call_soon_threadsafe(self._start_waiting)

    def shutdown(self) -> None:
        """Drop jobs not started (their requests are redelivered) and cancel the coroutines still
        running: the consumer calls this after its drain, so their requests are redelivered too."""
        future = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        try:
            future.result(eventloop.STOP_TIMEOUT)
        except concurrent.futures.TimeoutError:
            logger.warning("Handler %s kept the event loop busy during shutdown", self._handler_name)
        eventloop.release()

    # ----------------------------------------------------------------- loop thread

    def _admit(self, job: J) -> None:
        if self._closed:
            return
        self._waiting.append(job)
        self._start_waiting()

    def _start_waiting(self) -> None:
        while self._waiting and len(self._running) < self.workers and not self._closed:
            job = self._waiting.popleft()
            task = self._loop.create_task(self._handle(job), name=f"{self._handler_name} {job.context.correlation_id}")
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("Handler %s task failed outside the handler", self._handler_name, exc_info=task.exception())
        self._start_waiting()

    async def _close(self) -> None:
        self._closed = True
        self._waiting.clear()
        running = list(self._running)
        if not running:
            return
        logger.warning("Cancelling %d running handler %s coroutines at shutdown; their requests are redelivered",
                       len(running), self._handler_name)
        for task in running:
            task.cancel()
        await asyncio.wait(running, timeout=eventloop.STOP_TIMEOUT)

    async def _handle(self, job: J) -> None:
        """Await the handler on one request within its deadline, then hand the outcome on."""
        started = time.monotonic()
        deadline = headers_deadline(job.context.headers)
        left = None if deadline is None else deadline - time.time()
        if left is not None and left <= 0:
            self._stale(job, "its deadline passed while it waited for a free slot")
            self._on_done(job)
            return
        scope = asyncio.timeout(left)
        try:
            with tracing.active(job.context.trace_id):
                async with scope:
                    reply = await eventloop.TimedSteps(self._handler(job.body, job.context), self._blocking_threshold,
                                                       lambda held: self._blocked(job, held))
            succeeded(job, reply, started, self._service)
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise  # shutdown: no outcome, the request is redelivered
            failed(job, asyncio.CancelledError("the handler's own await was cancelled"), started,
                   self._handler_name, self._service, include_traceback=self._include_traceback)
        except Exception as exc:
            if scope.expired():
                self._stale(job, f"still running at its deadline after {time.monotonic() - started:.3f}s; cancelled")
            else:
                failed(job, exc, started, self._handler_name, self._service, include_traceback=self._include_traceback)
        self._on_done(job)

    def _stale(self, job: J, why: str) -> None:
        """The request's caller stopped waiting: reject it to the dead-letter queue as ``stale``."""
        logger.warning("Handler %s: request %s; dead-lettering it as stale", self._handler_name, why,
                       extra={"CORRELATION_ID": job.context.correlation_id, "HANDLER": self._handler_name,
                              "TRACE_ID": job.context.trace_id, "REASON": REJECT_STALE})
        job.outcome = Outcome.rejection(Rejection(REJECT_STALE, f"handler {why}"))

    def _blocked(self, job: J, held: float) -> None:
        logger.warning("Handler %s blocked the event loop for %.3fs (a blocking call inside async def?); "
                       "every other coroutine handler waited", self._handler_name, held,
                       extra={"CORRELATION_ID": job.context.correlation_id, "HANDLER": self._handler_name,
                              "BLOCKED_SECONDS": f"{held:.3f}"})
