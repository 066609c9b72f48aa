"""RequestWindow: one request at a time while redeliveries arrive, the full window from the first
fresh request, and back to one on every new consuming channel."""

from __future__ import annotations

from burrow.amqp.window import RequestWindow


def test_starts_at_one_and_opens_on_the_first_fresh_request() -> None:
    window = RequestWindow(lambda: 32)
    assert window.size() == 1
    assert window.on_delivery(redelivered=False) is True
    assert window.size() == 32 and not window.probation


def test_redeliveries_keep_the_window_at_one() -> None:
    window = RequestWindow(lambda: 32)
    assert [window.on_delivery(redelivered=True) for _ in range(5)] == [False] * 5
    assert window.size() == 1
    assert window.on_delivery(redelivered=False) is True
    assert window.size() == 32


def test_once_open_no_delivery_asks_to_resubscribe() -> None:
    window = RequestWindow(lambda: 8)
    window.on_delivery(redelivered=False)
    assert window.on_delivery(redelivered=False) is False
    assert window.on_delivery(redelivered=True) is False
    assert window.size() == 8


def test_restart_goes_back_to_one() -> None:
    window = RequestWindow(lambda: 8)
    window.on_delivery(redelivered=False)
    window.restart()
    assert window.size() == 1 and window.probation


def test_the_full_size_follows_the_live_concurrency() -> None:
    full = {"size": 8}
    window = RequestWindow(lambda: full["size"])
    window.on_delivery(redelivered=False)
    full["size"] = 16
    assert window.size() == 16
