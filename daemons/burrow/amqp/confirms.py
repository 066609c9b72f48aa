"""``ConfirmTracker``: which published messages the broker has not confirmed yet.

With publisher confirms the broker numbers a channel's publishes 1, 2, 3, ... and acks or nacks
them, one tag at a time or, with ``multiple``, every tag up to one. The tracker mirrors that
numbering: :meth:`published` gives each message the next tag, :meth:`confirmed` turns a broker
ack/nack into the messages it covers, and :meth:`reset` hands back every message still unconfirmed
when a channel is lost, so the owner can publish them again on the next channel, whose tags start
again at 1. It runs on the I/O thread only.
"""

from __future__ import annotations

import itertools
from typing import Generic, TypeVar

T = TypeVar("T")


class ConfirmTracker(Generic[T]):
    """Delivery tag counter plus the map of unconfirmed messages of the current channel."""

    def __init__(self) -> None:
        self._next_tag = 1
        self._unconfirmed: dict[int, T] = {}

    def __len__(self) -> int:
        return len(self._unconfirmed)

    def pending(self) -> list[T]:
        """The unconfirmed messages, oldest first."""
        return list(self._unconfirmed.values())

    def published(self, message: T) -> int:
        """Record ``message`` as the channel's next publish; return its delivery tag."""
        tag = self._next_tag
        self._unconfirmed[tag] = message
        self._next_tag += 1
        return tag

    def covered(self, delivery_tag: int, multiple: bool) -> list[int]:
        """The tracked tags one ack or nack covers, oldest first, without removing them.

        ``multiple`` covers every tag up to ``delivery_tag`` still unconfirmed (tags enter the dict
        in increasing order, so those are its head). A tag not (or no longer) tracked, e.g. one
        confirmed before or one of a channel since reset, covers nothing.
        """
        if not multiple:
            return [delivery_tag] if delivery_tag in self._unconfirmed else []
        return list(itertools.takewhile(lambda tag: tag <= delivery_tag, self._unconfirmed))

    def peek(self, delivery_tag: int, multiple: bool) -> list[T]:
        """The messages one ack or nack covers, without removing them (see :meth:`covered`)."""
        return [self._unconfirmed[tag] for tag in self.covered(delivery_tag, multiple)]

    def confirmed(self, delivery_tag: int, multiple: bool) -> list[T]:
        """Remove and return the messages one ack or nack covers, oldest first."""
        return [self._unconfirmed.pop(tag) for tag in self.covered(delivery_tag, multiple)]

    def reset(self) -> list[T]:
        """A new channel: tags restart at 1; return the unconfirmed messages to publish again."""
        resend = list(self._unconfirmed.values())
        self._unconfirmed.clear()
        self._next_tag = 1
        return resend
