"""Deadlines: keys come out in deadline order once their deadline passes; rebuild drops the dead.
RequestDeadlines: each request in flight past its deadline comes out once, with an error that says
whether the broker had confirmed it."""

from __future__ import annotations

from burrow.deadlines import Deadlines, RequestDeadlines
from burrow.inflight import InFlight, Request


def test_expired_returns_due_keys_earliest_first_and_keeps_the_rest() -> None:
    deadlines = Deadlines()
    deadlines.add(3.0, "c")
    deadlines.add(1.0, "a")
    deadlines.add(2.0, "b")
    assert deadlines.expired(2.0) == ["a", "b"]
    assert deadlines.expired(2.5) == []
    assert deadlines.expired(10.0) == ["c"]
    assert len(deadlines) == 0


def test_equal_deadlines_keep_insertion_order() -> None:
    deadlines = Deadlines()
    for key in ("x", "y", "z"):
        deadlines.add(5.0, key)
    assert deadlines.expired(5.0) == ["x", "y", "z"]


def test_rebuild_keeps_only_the_live_entries() -> None:
    deadlines = Deadlines()
    for n in range(100):
        deadlines.add(float(n), f"k{n}")
    deadlines.rebuild([(50.0, "k50"), (7.0, "k7")])
    assert len(deadlines) == 2
    assert deadlines.expired(100.0) == ["k7", "k50"]


def _in_flight(*requests: Request) -> InFlight:
    table = InFlight(len(requests) or 1)
    for request in requests:
        table.reserve(block=False)
        table.add(request)
    return table


def test_a_request_past_its_deadline_is_told_whether_the_broker_confirmed_it() -> None:
    confirmed, unconfirmed = Request.create("p-1", b"", 1.0, None), Request.create("p-2", b"", 1.0, None)
    confirmed.confirmed = True
    deadlines = RequestDeadlines(_in_flight(confirmed, unconfirmed))
    for request in (confirmed, unconfirmed):
        deadlines.published(request)
    expired = dict(deadlines.expired(unconfirmed.deadline + 0.001))
    assert expired.keys() == {confirmed, unconfirmed}
    assert expired[confirmed].confirmed is True
    assert str(expired[confirmed]) == "no reply within the request's deadline (correlation id p-1)"
    assert expired[unconfirmed].confirmed is False
    assert str(expired[unconfirmed]) == ("no reply within the request's deadline (correlation id p-2): "
                                         "the broker never confirmed it")
    assert deadlines.expired(unconfirmed.deadline + 10) == [], "each deadline comes out once"


def test_a_request_no_longer_in_flight_is_not_expired_and_an_unsent_one_is() -> None:
    answered, waiting = Request.create("p-1", b"", 1.0, None), Request.create("p-2", b"", 1.0, None)
    table = _in_flight(answered, waiting)
    deadlines = RequestDeadlines(table)
    deadlines.published(answered)
    table.take("p-1")
    ((request, error),) = deadlines.expired(waiting.deadline + 0.001, [waiting])
    assert request is waiting and error.confirmed is False
    assert str(error) == "broker unreachable until the request's deadline: the broker never confirmed it"
    assert deadlines.expired(waiting.deadline - 0.5, [waiting]) == [], "an unsent request before its deadline stays"
