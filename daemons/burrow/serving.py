"""``ServedService``: one service inside a consumer daemon, with its own workers and request window.

A consumer daemon has one I/O thread and one consuming channel; each service it serves registers
its own consumer on its own queue on that channel, with its own prefetch, and runs its requests in
its own :class:`~burrow.workers.HandlerPool` (threads), or for an ``async def`` handler its own
:class:`~burrow.asyncworkers.AsyncHandlerPool` (coroutines on the daemon's one event loop). So a
slow service fills only its own window and its own workers, and the requests of a fast service
beside it are never queued behind them. What is per channel (delivery tags, acks, the reply
publisher) stays with the consumer. A :class:`Delivery` is one request of a service on its way
from the queue to its ack.

A service split over several queues (:mod:`burrow.partitions`) is served by one ``ServedService``
per partition queue, each with its own window and registration, all sharing the service's one
pool (:func:`serve`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from burrow import tracing
from burrow.config.schema import ConsumerConfig, ServiceConfig, TopologyConfig
from burrow.asyncworkers import AsyncHandlerPool
from burrow.handlers import Handler, RequestContext, is_coroutine_handler
from burrow.partitions import partition_queues
from burrow.protocol import Outcome, headers_deadline
from burrow.services import queue_name
from burrow.amqp.registrations import Registrations
from burrow.amqp.window import AdaptiveWindow, RequestWindow
from burrow.workers import HandlerPool


class ServedService:
    """The I/O thread's state of one service: its pool, window and registration on the channel.

    ``concurrency``/``prefetch`` of 0 in ``service`` follow ``[consumer]`` (``settings``), also
    after a reload changes ``consumer.concurrency`` (:meth:`follows_consumer`).
    """

    def __init__(self, name: str, service: ServiceConfig, settings: ConsumerConfig, request_queue: str,
                 handler: Handler, on_done: Callable[[Any], None], *, queue: str | None = None,
                 workers: HandlerPool[Any] | AsyncHandlerPool[Any] | None = None, label: str | None = None) -> None:
        self.config = service
        self.name = name
        #: The name its queue's backlog is reported under: the service's, ``<name>.<i>`` for a partition.
        self.label = label or name
        self.queue = queue or queue_name(request_queue, name)
        self._settings = settings
        count = service.concurrency or settings.concurrency
        self.workers: HandlerPool[Any] | AsyncHandlerPool[Any]
        if workers is not None:
            self.workers = workers
        elif is_coroutine_handler(handler):
            self.workers = AsyncHandlerPool(handler, service.handler, count, include_traceback=settings.include_traceback,
                                            on_done=on_done, service=name, blocking_threshold=settings.blocking_warning)
        else:
            self.workers = HandlerPool(handler, service.handler, count, include_traceback=settings.include_traceback,
                                       on_done=on_done, service=name)
        # consumer.window = "adaptive": the open window moves from the configured one (amqp.window).
        self.adaptive = (AdaptiveWindow(self.configured_prefetch(), lambda: self.workers.workers)
                         if settings.window == "adaptive" else None)
        self.window = RequestWindow(self.prefetch)
        #: Its consumers on the consuming channel (the consumer binds its callbacks).
        self.registrations = Registrations(self.queue)
        self.registered = False

    @property
    def follows_consumer(self) -> bool:
        """True when this service's concurrency is ``[consumer] concurrency`` (none of its own)."""
        return self.config.concurrency == 0

    def configured_prefetch(self) -> int:
        """The service's ``prefetch``, else ``[consumer] prefetch``, else 8 per worker."""
        return self.config.prefetch or self._settings.effective_prefetch(self.workers.workers)

    def prefetch(self) -> int:
        """Requests to hold unacked with the full window open: the adaptive window's size, else
        :meth:`configured_prefetch`."""
        return self.adaptive.size if self.adaptive is not None else self.configured_prefetch()

    def restart(self) -> None:
        """A new consuming channel: not registered, and back to the probation window."""
        self.registrations.reset()
        self.registered = False
        self.window.restart()

    def describe(self) -> str:
        """``name (queue, N workers, prefetch P, handler)`` for the ready log line."""
        return (f"{self.name} ({self.queue}, {self.workers.workers} workers, prefetch {self.prefetch()}, "
                f"handler {self.config.handler})")


@dataclass(eq=False, slots=True)
class Delivery:
    """One request between its delivery and its ack, with the handler's outcome once it ran."""

    service: ServedService
    delivery_tag: int
    generation: int  # which consuming channel delivered it; acks go only to that channel
    reply_to: str
    context: RequestContext
    body: bytes
    consumer_tag: str = ""  # the registration that delivered it (amqp.registrations)
    outcome: Outcome | None = None
    returned: str | None = None
    unroutable_retries: int = 0  # times its reply was published again after coming back unroutable
    finished_at: float = 0.0  # time.monotonic() when its handler ended (adaptive window)

    @property
    def correlation_id(self) -> str:
        return self.context.correlation_id

    @property
    def deadline(self) -> float | None:
        """The request's deadline (UNIX seconds) from its headers, if it has one."""
        return headers_deadline(self.context.headers)

    @property
    def traceparent(self) -> str | None:
        value = self.context.headers.get(tracing.HEADER)
        return value if isinstance(value, str) else None


def serve(topology: TopologyConfig, settings: ConsumerConfig, services: Sequence[tuple[str, ServiceConfig]],
          handlers: Mapping[str, Handler], on_done: Callable[[Any], None]) -> list[ServedService]:
    """One :class:`ServedService` per request queue of each of ``services`` (``handlers`` by name):
    a split service gets one per partition queue, all on one :class:`HandlerPool`."""
    served: list[ServedService] = []
    for name, service in services:
        queues = partition_queues(topology, name, service.partitions)
        labels = [name] if len(queues) == 1 else [f"{name}.{index}" for index in range(len(queues))]
        first = ServedService(name, service, settings, topology.request_queue, handlers[name], on_done,
                              queue=queues[0], label=labels[0])
        served.append(first)
        served += [ServedService(name, service, settings, topology.request_queue, handlers[name], on_done,
                                 queue=queue, workers=first.workers, label=label)
                   for queue, label in zip(queues[1:], labels[1:])]
    return served
