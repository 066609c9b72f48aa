"""Deadlines: keys come out in deadline order once their deadline passes; rebuild drops the dead."""

from __future__ import annotations

from burrow.deadlines import Deadlines


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
