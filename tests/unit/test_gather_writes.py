"""Gathered writes on pika's plaintext transport, and the private parts of pika they patch.

``burrow.amqp.gather`` replaces the send loop of pika's ``_AsyncPlaintextTransport``; each check
here names what an installed pika lacks or changed, so a pika release that moves one fails here,
by name, instead of silently sending frame by frame again (or corrupting the stream).
"""

from __future__ import annotations

import collections
import inspect
import socket
import types
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from pika.adapters import base_connection
from pika.adapters.utils import io_services_utils

from burrow.amqp.gather import MAX_GATHER, TRANSPORT_ATTRIBUTES, gather_writes, produce_gathered

PIKA = f"pika {pika.__version__}"


class NoIO:
    """pika's I/O services as far as a transport touches them outside its event handlers."""

    def set_reader(self, fd: int, callback: Any) -> None:
        pass

    def set_writer(self, fd: int, callback: Any) -> None:
        pass

    def remove_writer(self, fd: int) -> bool:
        return True


class Connection:
    """Stands for a ``SelectConnection``: gather_writes only reads its ``_transport``."""

    def __init__(self, transport: object) -> None:
        self._transport = transport


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    left.setblocking(False)
    yield left, right
    left.close()
    right.close()


def transport(sock: socket.socket) -> Any:
    cls = io_services_utils._AsyncPlaintextTransport
    return cls(sock, None, NoIO())


def test_pika_has_the_transport_class_and_its_send_loop() -> None:
    assert hasattr(io_services_utils, "_AsyncPlaintextTransport"), f"{PIKA}: no io_services_utils._AsyncPlaintextTransport"
    produce = getattr(io_services_utils._AsyncPlaintextTransport, "_produce", None)
    assert callable(produce), f"{PIKA}: _AsyncPlaintextTransport has no _produce"
    assert list(inspect.signature(produce).parameters) == ["self"], f"{PIKA}: _produce{inspect.signature(produce)}"


def test_pika_keeps_the_queue_the_loop_sends_from(pair) -> None:
    plain = transport(pair[0])
    for name in TRANSPORT_ATTRIBUTES:
        assert hasattr(plain, name), f"{PIKA}: _AsyncPlaintextTransport has no {name}"
    assert isinstance(plain._tx_buffers, collections.deque), f"{PIKA}: _tx_buffers is {type(plain._tx_buffers)}"
    assert plain._sock is pair[0], f"{PIKA}: _sock is not the transport's socket"
    plain.write(b"frame")
    assert list(plain._tx_buffers) == [b"frame"] and plain._tx_buffered_byte_count == 5, (
        f"{PIKA}: write() no longer queues on _tx_buffers/_tx_buffered_byte_count"
    )


def test_pika_sends_only_through_produce_and_connections_keep_their_transport() -> None:
    writable = inspect.getsource(io_services_utils._AsyncPlaintextTransport._on_socket_writable)
    assert "self._produce()" in writable, f"{PIKA}: the writable handler no longer calls _produce"
    assert "self._transport" in inspect.getsource(base_connection.BaseConnection), (
        f"{PIKA}: BaseConnection keeps no _transport"
    )


def test_gathered_loop_sends_every_queued_frame_in_order_in_one_call(pair) -> None:
    plain = transport(pair[0])
    assert gather_writes(Connection(plain)) is True
    frames = [bytes([65 + n % 26]) * (n + 1) for n in range(MAX_GATHER + 10)]
    for frame in frames:
        plain.write(frame)
    calls: list[int] = []
    real = pair[0].sendmsg

    class Counting:
        def sendmsg(self, buffers: list[bytes]) -> int:
            calls.append(len(buffers))
            return real(buffers)

    plain._sock = Counting()
    plain._produce()
    expected = b"".join(frames)
    received = b""
    while len(received) < len(expected):
        received += pair[1].recv(1 << 20)
    assert received == expected
    assert calls == [MAX_GATHER, 10]
    assert not plain._tx_buffers and plain._tx_buffered_byte_count == 0


def test_a_partial_send_leaves_the_rest_queued() -> None:
    """The socket takes 4 of 7 bytes, then nothing (EAGAIN-like): the unsent tail stays queued."""

    class Scripted:
        def __init__(self, results: list[int]) -> None:
            self.results = results

        def sendmsg(self, buffers: list[bytes]) -> int:
            return self.results.pop(0)

    queue = types.SimpleNamespace(_sock=Scripted([4, 0]), _tx_buffers=collections.deque([b"abc", b"defg"]),
                                  _tx_buffered_byte_count=7)
    produce_gathered(queue)
    assert list(queue._tx_buffers) == [b"efg"] and queue._tx_buffered_byte_count == 3


def test_other_transports_are_left_alone() -> None:
    assert gather_writes(Connection(object())) is False
    assert gather_writes(Connection(None)) is False
