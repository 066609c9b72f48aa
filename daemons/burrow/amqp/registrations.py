"""``Registrations``: one service's request window as consumers registered on its queue.

RabbitMQ applies a prefetch (``basic.qos``, per consumer) only to consumers registered after it,
and a quorum queue takes no other kind, so a window changes by registering or cancelling
consumers. A cancel is where requests can go back to the queue: the broker keeps delivering
to a consumer until it has applied the cancel, pika rejects (with requeue) every delivery for a tag
it has marked cancelled, and a quorum queue (RabbitMQ 3.10 and 4.0) itself returns any delivery
that reaches the channel after the cancel (rabbitmq-server#3729). Each return counts towards the
queue's delivery limit, so a request can be dead-lettered as ``delivery_limit`` without ever
running: pika sends a cancel only after the channel's pending qos/consume (other services still
registering) while acks go out at once, so a consumer marked cancelled gets credit back, and the
broker hands the same request to it again and again until the cancel arrives.

So here a window widens by registering one consumer more for the difference, and narrows by
retiring consumers. A retiring consumer is cancelled only once it holds as many requests as its
prefetch: the broker then has no credit to send it anything, and holds none of its messages in
flight. Its requests are acked (or rejected) only after the broker's cancel-ok, since a
settlement sent before the cancel would give it credit back while still registered. The broker
keeps a cancelled consumer's unacked messages with the channel until they are settled. Nothing
goes back to the queue because the window moved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from pika.channel import Channel

logger = logging.getLogger(__name__)

#: ``on_message(channel, method, properties, body)``, as pika calls a consumer.
OnMessage = Callable[..., None]


@dataclass(eq=False)
class Registration:
    """One consumer on the queue: its tag, its prefetch and the requests it holds."""

    tag: str
    prefetch: int
    held: int = 0  # delivered, not yet acked or rejected
    retiring: bool = False  # to be cancelled once it holds ``prefetch`` requests
    cancelling: bool = False  # cancel sent: settlements wait in ``waiting`` for the cancel-ok
    waiting: list[Any] = field(default_factory=list)


class Registrations:
    """The consumers of one queue on the current consuming channel (I/O thread only).

    After :meth:`bind`, ``release(items)`` is called with the settlements (whatever :meth:`may_settle` was given)
    that waited for a retired consumer's cancel-ok, to send them now.
    """

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self._on_message: OnMessage | None = None
        self._release: Callable[[list[Any]], None] = lambda _items: None
        self._by_tag: dict[str, Registration] = {}
        self._target = 0
        self._on_resized: Callable[[], None] = lambda: None

    def bind(self, on_message: OnMessage, release: Callable[[list[Any]], None]) -> None:
        """Set the consumer's callbacks: pika's ``on_message`` for deliveries, and ``release``."""
        self._on_message = on_message
        self._release = release

    @property
    def active(self) -> bool:
        """True once a consumer is registered on this channel."""
        return bool(self._by_tag)

    @property
    def size(self) -> int:
        """The window once retiring consumers are gone: the prefetch of the others."""
        return sum(r.prefetch for r in self._by_tag.values() if not r.retiring)

    @property
    def tags(self) -> list[str]:
        """Every consumer still registered (retiring ones included)."""
        return [r.tag for r in self._by_tag.values() if not r.cancelling]

    @property
    def waiting(self) -> int:
        """Settlements still waiting for a cancel-ok."""
        return sum(len(r.waiting) for r in self._by_tag.values())

    def reset(self) -> None:
        """A new consuming channel: the old channel's consumers are gone with it."""
        self._by_tag.clear()
        self._target = 0

    def resize(self, channel: Channel, size: int, on_ok: Callable[[], None]) -> None:
        """Make the window ``size``: retire the newest consumers until the others fit in it, and
        register one for what is missing once no consumer is retiring any more (so the window
        never holds more than the larger of the old and the new size). ``on_ok`` runs once the
        window is registered."""
        self._target, self._on_resized = size, on_ok
        for registration in reversed(list(self._by_tag.values())):
            if self.size <= size:
                break
            if not registration.retiring:
                registration.retiring = True
                self._cancel_if_full(channel, registration)
        self._top_up(channel)

    def _top_up(self, channel: Channel) -> None:
        if any(r.retiring for r in self._by_tag.values()):
            return  # the rest comes at the cancel-ok
        if self.size < self._target:
            self._register(channel, self._target - self.size, self._on_resized)
        else:
            self._on_resized()

    def delivered(self, channel: Channel, tag: str) -> None:
        """One request more delivered to consumer ``tag``."""
        registration = self._by_tag.get(tag)
        if registration is not None:
            registration.held += 1
            self._cancel_if_full(channel, registration)

    def may_settle(self, tag: str, item: Any) -> bool:
        """True when a request of consumer ``tag`` may be acked or rejected now; False when it
        must wait for that consumer's cancel-ok (``item`` is then given to ``release`` later)."""
        registration = self._by_tag.get(tag)
        if registration is None:
            return True
        if registration.cancelling:
            registration.waiting.append(item)
            return False
        registration.held -= 1
        return True

    def _register(self, channel: Channel, prefetch: int, on_ok: Callable[[], None]) -> None:
        """basic.qos, then basic.consume: pika sends the consume only after the broker's qos-ok,
        so the new consumer gets this prefetch and no other consumer changes."""
        assert self._on_message is not None, "bind() first"
        channel.basic_qos(prefetch_count=prefetch)
        tag = channel.basic_consume(queue=self.queue, on_message_callback=self._on_message,
                                    callback=lambda _frame: on_ok())
        self._by_tag[tag] = Registration(tag, prefetch)

    def _cancel_if_full(self, channel: Channel, registration: Registration) -> None:
        if not registration.retiring or registration.cancelling or registration.held < registration.prefetch:
            return
        registration.cancelling = True
        logger.debug("Retiring consumer %s of %s (prefetch %d)", registration.tag, self.queue, registration.prefetch)
        channel.basic_cancel(registration.tag, callback=lambda _frame: self._cancelled(channel, registration))

    def _cancelled(self, channel: Channel, registration: Registration) -> None:
        """cancel-ok: the broker sends it nothing more; settle what waited, forget it, and
        register what the window misses."""
        if self._by_tag.get(registration.tag) is not registration:
            return  # a new channel since
        del self._by_tag[registration.tag]
        waiting, registration.waiting = registration.waiting, []
        if waiting:
            self._release(waiting)
        if channel.is_open:
            self._top_up(channel)


__all__ = ["Registration", "Registrations"]
