"""``HandlerPool``: the consumer's worker threads, which run the handler and never touch a channel.

Each job is one request (its body and :class:`~burrow.handlers.RequestContext`); a worker runs the
handler on it, turns the return value or the exception into an :class:`~burrow.protocol.Outcome`
(data, not headers), stores it on the job and passes the job to ``on_done``, which hands it to the
I/O thread. Handlers run in threads so that one running for minutes never starves the AMQP
heartbeats. :meth:`HandlerPool.resize` (a SIGHUP reload) lets running handlers finish on the old
threads.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from typing import Callable, Generic, Protocol, TypeVar

from burrow import metrics, tracing
from burrow.handlers import Handler, RequestContext
from burrow.protocol import Outcome

logger = logging.getLogger(__name__)


class Job(Protocol):
    """What a worker needs of one request, and where it leaves the outcome."""

    body: bytes
    context: RequestContext
    outcome: Outcome | None


J = TypeVar("J", bound=Job)


class HandlerPool(Generic[J]):
    """``workers`` threads running ``handler`` (named ``handler_name`` in logs) of ``service`` on
    submitted jobs."""

    def __init__(self, handler: Handler, handler_name: str, workers: int, *, include_traceback: bool,
                 on_done: Callable[[J], None], service: str = "default") -> None:
        self._handler = handler
        self._handler_name = handler_name
        self._service = service
        self._include_traceback = include_traceback
        self._on_done = on_done
        self.workers = workers
        self._pool = self._new_pool(workers)

    @staticmethod
    def _new_pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="burrow-handler")

    def submit(self, job: J) -> None:
        self._pool.submit(self._run, job)

    def resize(self, workers: int) -> None:
        """New jobs go to ``workers`` fresh threads; the old threads finish what they run, then end."""
        old, self._pool = self._pool, self._new_pool(workers)
        self.workers = workers
        old.shutdown(wait=False)

    def shutdown(self) -> None:
        """Drop jobs not started yet (their requests are redelivered); running ones finish."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, job: J) -> None:
        """Worker thread: run the handler and hand its outcome on."""
        started = time.monotonic()
        try:
            with tracing.active(job.context.trace_id):
                reply = self._handler(job.body, job.context)
            succeeded(job, reply, started, self._service)
        except Exception as exc:
            failed(job, exc, started, self._handler_name, self._service, include_traceback=self._include_traceback)
        self._on_done(job)


def succeeded(job: Job, reply: object, started: float, service: str) -> None:
    """Store the handler's ``reply`` as ``job``'s outcome; a reply that is not bytes-like raises
    ``TypeError``, which the caller turns into an error reply with :func:`failed`."""
    if isinstance(reply, (bytearray, memoryview)):
        reply = bytes(reply)
    if not isinstance(reply, bytes):
        raise TypeError(f"handler returned {type(reply).__name__}, expected bytes")
    job.outcome = Outcome(reply)
    metrics.handler_finished(time.monotonic() - started, "ok", service)


def failed(job: Job, exc: BaseException, started: float, handler_name: str, service: str, *,
           include_traceback: bool) -> None:
    """Log the handler's exception and store the error reply (the caller's ``RemoteError``) as
    ``job``'s outcome; call it inside the ``except`` block so the traceback can be included."""
    metrics.handler_finished(time.monotonic() - started, "error", service)
    logger.warning("Handler %s raised %s: %s", handler_name, type(exc).__name__, exc,
                   extra={"CORRELATION_ID": job.context.correlation_id, "HANDLER": handler_name,
                          "TRACE_ID": job.context.trace_id})
    job.outcome = Outcome.failure(exc, include_traceback=include_traceback)
