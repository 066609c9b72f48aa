"""Gathered writes: one ``sendmsg`` for every AMQP frame pika queued since the last poll.

pika queues every AMQP frame as its own buffer (a message is three: method, header, body) and its
transport sends each with a separate ``send()``; with the TCP_NODELAY pika sets, each also leaves
as its own TCP segment that the broker parses on its own. The benchmark's profiles had a third of
the consumer's I/O thread in those calls. :func:`gather_writes` replaces the transport's send loop
with a scatter-gather ``sendmsg`` of everything queued: the same bytes in the same order, one
system call. Only pika's plaintext transport is changed; TLS transports keep pika's own loop.

This patches private parts of pika (tested with pika 1.4.4; ``pyproject.toml`` keeps pika below
2): ``pika.adapters.utils.io_services_utils._AsyncPlaintextTransport``, its method
``_produce`` (the send loop, called whenever the socket is writable) and the attributes it works
on, ``_tx_buffers`` (a deque of the queued ``bytes``), ``_tx_buffered_byte_count`` and ``_sock``,
reached through the connection's ``_transport``. :func:`gather_writes` leaves any transport that
does not look like that alone, and ``tests/unit/test_gather_writes.py`` names the first of them
that an installed pika lacks.
"""

from __future__ import annotations

import itertools
import types
from typing import Any

import pika
from pika.adapters.utils.io_services_utils import _AsyncPlaintextTransport

#: Most buffers handed to one ``sendmsg`` call (Linux allows 1024).
MAX_GATHER = 512

#: The transport attributes the gathered send loop reads and updates.
TRANSPORT_ATTRIBUTES = ("_tx_buffers", "_tx_buffered_byte_count", "_sock")


def gather_writes(connection: pika.SelectConnection) -> bool:
    """Make ``connection`` send all its queued frames with one ``sendmsg`` call instead of one
    ``send`` per frame; return whether it applied (False for TLS or an unfamiliar pika)."""
    transport = getattr(connection, "_transport", None)
    if type(transport) is not _AsyncPlaintextTransport or not all(
        hasattr(transport, name) for name in TRANSPORT_ATTRIBUTES
    ):
        return False
    setattr(transport, "_produce", types.MethodType(produce_gathered, transport))
    return True


def produce_gathered(transport: Any) -> None:
    """``_produce`` of pika's transport, sending up to ``MAX_GATHER`` queued buffers per call.

    Like pika's own loop it runs until the buffers are empty or the socket raises (EAGAIN leaves
    the rest queued and pika waits for the socket to become writable again).
    """
    buffers = transport._tx_buffers
    sock = transport._sock
    while buffers:
        sent = sock.sendmsg(list(itertools.islice(buffers, MAX_GATHER)))
        if not sent:
            return  # nothing taken: pika calls again when the socket is writable
        transport._tx_buffered_byte_count -= sent
        while sent:
            head = buffers[0]
            if sent >= len(head):
                buffers.popleft()
                sent -= len(head)
            else:
                buffers[0] = head[sent:]
                sent = 0


__all__ = ["MAX_GATHER", "TRANSPORT_ATTRIBUTES", "gather_writes", "produce_gathered"]
