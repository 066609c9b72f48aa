"""The producer's requests in flight: from :meth:`~burrow.producer.Producer.submit` to their outcome.

:class:`InFlight` is the one table caller threads and the I/O thread share: it bounds the requests
outstanding to ``producer.max_in_flight`` (a slot is reserved before a request is built and freed
when it is taken out), finds a request by correlation id when its reply arrives, and hands each
request out of the table exactly once, so its future is resolved exactly once whichever of reply,
nack, return, deadline or shutdown comes first. :meth:`InFlight.wait_empty` lets a stop wait for
the last one.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from burrow import metrics
from burrow.errors import Rejected, RemoteError, RequestTimeout
from burrow.partitions import keyed_headers
from burrow.protocol import request_headers
from burrow.stats import ProducerStats

logger = logging.getLogger(__name__)


class RequestFuture(Future):  # type: ignore[type-arg]
    """A ``Future[bytes]`` that also knows its request's ids (for logs and HTTP headers)."""

    correlation_id: str
    message_id: str


@dataclass(eq=False, slots=True)
class Request:
    """One request as the producer keeps it until its outcome."""

    correlation_id: str
    body: bytes
    deadline: float  # time.monotonic() at which the request times out
    wall_deadline: float  # the same moment as time.time(), sent to the consumer
    headers: dict[str, Any]  # the caller's headers plus the deadline, as published
    future: RequestFuture
    submitted: float = field(default_factory=time.monotonic)
    published: bool = False
    confirmed: bool = False  # the broker acked a publish of it (on this channel or an earlier one)
    service: str | None = None  # None: the default service

    @classmethod
    def create(cls, correlation_id: str, body: bytes, seconds: float, headers: dict[str, Any] | None,
               service: str | None = None, key: str | None = None) -> "Request":
        """A request for ``service`` that times out ``seconds`` from now, with a future that knows its
        ids; it carries ``key`` (else its correlation id) for a split service (:mod:`burrow.partitions`)."""
        future = RequestFuture()
        future.correlation_id = future.message_id = correlation_id
        now = time.monotonic()
        wall_deadline = time.time() + seconds
        return cls(correlation_id, bytes(body), now + seconds, wall_deadline,
                   request_headers(keyed_headers(headers, key, correlation_id), wall_deadline), future, now,
                   service=service)


class InFlight:
    """At most ``limit`` requests by correlation id; any thread."""

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._empty = threading.Condition(self._lock)
        self._slots = threading.BoundedSemaphore(limit)
        self._requests: dict[str, Request] = {}
        self.added = 0

    def __len__(self) -> int:
        return len(self._requests)

    def reserve(self, block: bool) -> bool:
        """Take a slot for a request about to be added (waiting for one if ``block``)."""
        return self._slots.acquire(blocking=block)

    def unreserve(self) -> None:
        """Give back a slot taken by :meth:`reserve` for a request that will not be added."""
        self._slots.release()

    def add(self, request: Request) -> None:
        with self._lock:
            self._requests[request.correlation_id] = request
            self.added += 1

    def get(self, correlation_id: str | None) -> Request | None:
        with self._lock:
            return self._requests.get(correlation_id) if correlation_id else None

    def take(self, correlation_id: str | None) -> Request | None:
        """Remove the request and free its slot; None if it was taken out before."""
        if correlation_id is None:
            return None
        with self._lock:
            request = self._requests.pop(correlation_id, None)
            if request is not None and not self._requests:
                self._empty.notify_all()
        if request is not None:
            self._slots.release()
        return request

    def snapshot(self) -> list[Request]:
        """The requests in flight, oldest first."""
        with self._lock:
            return sorted(self._requests.values(), key=lambda r: r.submitted)

    def wait_empty(self, deadline: float, alive: Callable[[], bool]) -> None:
        """Block until no request is in flight, ``time.monotonic()`` passes ``deadline`` or
        ``alive()`` turns false (the I/O thread that would answer them is gone)."""
        with self._empty:
            while self._requests and time.monotonic() < deadline and alive():
                self._empty.wait(min(0.1, max(0.0, deadline - time.monotonic())))


def resolve(request: Request, stats: ProducerStats, *, result: bytes | None = None, error: BaseException | None = None) -> None:
    """Settle ``request``'s future with its reply or error and count the outcome in ``stats`` and the
    metrics; a future its caller cancelled is only counted. Called once per request, by whoever took
    it out of :class:`InFlight`, so a confirm or reply arriving after this changes no count. A
    timeout the broker never confirmed is also logged (INFO, with its ``CORRELATION_ID``)."""
    elapsed = time.monotonic() - request.submitted
    if not request.future.set_running_or_notify_cancel():  # its caller cancelled it
        stats.cancelled += 1
        metrics.reply_received(elapsed, "cancelled")
        return
    if error is None:
        stats.answered += 1
        metrics.reply_received(elapsed, "ok")
        request.future.set_result(result)
        return
    if isinstance(error, RemoteError):
        stats.remote_errors += 1
        metrics.reply_received(elapsed, "error")
    elif isinstance(error, Rejected):
        stats.rejected += 1
        metrics.reply_received(elapsed, "rejected")
    elif isinstance(error, RequestTimeout):
        stats.timeouts += 1
        metrics.reply_received(elapsed, "timeout")
        if error.confirmed is False:
            # Per id, so that a caller's 504 can be told from a request the broker took and lost.
            # DEBUG: the caller gets the error (the daemon logs its 504 at INFO with this word in it).
            stats.unconfirmed_timeouts += 1
            metrics.timeout_unconfirmed()
            logger.debug("Request timed out before the broker confirmed it",
                        extra={"CORRELATION_ID": request.correlation_id})
    else:
        stats.failed += 1
        metrics.request_failed(error)
    request.future.set_exception(error)
