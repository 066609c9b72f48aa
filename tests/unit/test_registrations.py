"""``Registrations``: a window moves by registering or retiring consumers, never by a cancel that
could send a delivery back to the queue (the broker's side is in tests/integration/test_window.py)."""

from __future__ import annotations

from typing import Any, Callable

from burrow.amqp.registrations import Registrations


class Channel:
    """Records what a pika channel is asked to do; the test plays the broker's replies."""

    def __init__(self) -> None:
        self.is_open = True
        self.calls: list[tuple[str, Any]] = []
        self.cancel_ok: dict[str, Callable[[object], None]] = {}
        self._tags = 0

    def basic_qos(self, prefetch_count: int) -> None:
        self.calls.append(("qos", prefetch_count))

    def basic_consume(self, queue: str, on_message_callback: Any, callback: Callable[[object], None]) -> str:
        self._tags += 1
        tag = f"ctag{self._tags}"
        self.calls.append(("consume", tag))
        callback(None)
        return tag

    def basic_cancel(self, tag: str, callback: Callable[[object], None]) -> None:
        self.calls.append(("cancel", tag))
        self.cancel_ok[tag] = callback


def window() -> tuple[Registrations, Channel, list[Any]]:
    released: list[Any] = []
    registrations = Registrations("q")
    registrations.bind(lambda *_args: None, released.extend)
    return registrations, Channel(), released


def test_the_window_widens_by_registering_the_difference_and_cancels_nothing() -> None:
    registrations, channel, _ = window()
    registrations.resize(channel, 1, lambda: None)
    registrations.delivered(channel, "ctag1")
    registrations.resize(channel, 16, lambda: None)
    assert channel.calls == [("qos", 1), ("consume", "ctag1"), ("qos", 15), ("consume", "ctag2")]
    assert registrations.size == 16 and registrations.tags == ["ctag1", "ctag2"]


def test_a_narrower_window_cancels_a_consumer_only_once_it_is_full_and_settles_after_cancel_ok() -> None:
    registrations, channel, released = window()
    registrations.resize(channel, 1, lambda: None)
    registrations.resize(channel, 8, lambda: None)  # ctag1 (1) + ctag2 (7)
    for _ in range(6):
        registrations.delivered(channel, "ctag2")
    registrations.resize(channel, 4, lambda: None)
    # ctag2 still has credit: a cancel now could meet a delivery on its way, so it waits.
    assert ("cancel", "ctag2") not in channel.calls and registrations.size == 1
    assert registrations.may_settle("ctag2", "a")  # settled before the cancel: goes out now
    registrations.delivered(channel, "ctag2")
    registrations.delivered(channel, "ctag2")  # 7 held: no credit left, the cancel goes
    assert channel.calls[-1] == ("cancel", "ctag2")
    assert not registrations.may_settle("ctag2", "b") and registrations.waiting == 1
    assert ("qos", 3) not in channel.calls, "nothing is registered while a consumer is retiring"
    channel.cancel_ok["ctag2"](None)
    assert released == ["b"] and registrations.waiting == 0
    assert channel.calls[-2:] == [("qos", 3), ("consume", "ctag3")] and registrations.size == 4
    assert registrations.tags == ["ctag1", "ctag3"]


def test_a_new_channel_forgets_the_old_consumers() -> None:
    registrations, channel, released = window()
    registrations.resize(channel, 1, lambda: None)
    registrations.delivered(channel, "ctag1")
    registrations.resize(channel, 0, lambda: None)
    assert channel.calls[-1] == ("cancel", "ctag1") and not registrations.may_settle("ctag1", "x")
    registrations.reset()
    assert not registrations.active and registrations.may_settle("ctag1", "y")
    channel.cancel_ok["ctag1"](None)
    assert released == []
