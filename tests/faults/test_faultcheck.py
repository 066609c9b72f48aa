"""The checker itself: each count it makes can be non-zero, and per request, not in total."""

from __future__ import annotations

import collections
import json

import pytest

from faultcheck import Outcome, Run, Tally, count, expected_reply
from render_reliability import passed, render

pytestmark = pytest.mark.faults


def runs(body: bytes, cid: str, *flags: bool) -> list[Run]:
    return [Run(body, flag, cid) for flag in flags]


def answered(*bodies: bytes) -> list[Outcome]:
    return [Outcome(body, "answered") for body in bodies]


def test_an_unflagged_second_run_is_unexplained_unless_that_same_request_was_republished() -> None:
    handler_runs = runs(b"a", "c-a", False, False) + runs(b"b", "c-b", False, True) + runs(b"c", "c-c", False, False)
    # A republish of "c" explains "c"'s second run; it must not excuse "a"'s.
    tally = count(Tally("t", "t"), answered(b"a", b"b", b"c"), handler_runs, collections.Counter({"c-c": 1}))
    assert (tally.duplicates_explained, tally.duplicates_unexplained) == (2, 1)
    assert tally.problems == ["b'a' ran 2 times, 2 unflagged, republished 0 times: 1 unexplained"]
    assert not tally.ok


def test_a_republish_explains_one_run_each() -> None:
    tally = count(Tally("t", "t"), answered(b"a"), runs(b"a", "c-a", False, False, False), collections.Counter({"c-a": 1}))
    assert (tally.duplicates_explained, tally.duplicates_unexplained) == (1, 1)


def test_caller_outcomes_and_second_answers_are_counted() -> None:
    outcomes = [Outcome(b"a", "answered"), Outcome(b"b", "answered", answers=2), Outcome(b"c", "503"),
                Outcome(b"d", "504"), Outcome(b"e", "lost", 0), Outcome(b"f", "unexpected")]
    tally = count(Tally("t", "t", allow_errors=True), outcomes, runs(b"a", "1", False) + runs(b"b", "2", False)
                  + runs(b"f", "3", False))
    assert (tally.sent, tally.answered, tally.failed_503, tally.failed_504, tally.lost, tally.unexpected,
            tally.answered_twice) == (6, 2, 1, 1, 1, 1, 1)
    assert tally.bad() == {"lost": 1, "unexpected": 1, "answered_twice": 1}


def test_an_answer_no_handler_made_is_unexpected() -> None:
    tally = count(Tally("t", "t"), answered(b"a", b"b"), runs(b"a", "1", False))
    assert tally.unexpected == 1 and not tally.ok


def test_the_report_renders_a_tally_of_the_shared_shape_and_judges_it_by_its_counts(tmp_path) -> None:
    """Another campaign's tally (only the shared keys, plus one unknown) renders in the same table;
    the result is recomputed from the counts, not taken from the tally's own word."""
    cluster = {"scenario": "cluster-node-kill", "command": "make cluster-faults", "revision": "abc123",
               "date": "2026-11-29T06:00:00Z", "sent": 10, "answered": 9, "failed_503": 0, "failed_504": 0,
               "lost": 1, "duplicates_explained": 0, "duplicates_unexplained": 0, "duration_s": 5.0,
               "ok": True, "nodes": 3}
    assert not passed(cluster)
    assert passed({**cluster, "answered": 10, "lost": 0})
    assert not passed({**cluster, "answered": 10, "lost": 0, "test_failed": "AssertionError: the fault did not bite"})
    text = render([json.loads(json.dumps(cluster))], None)
    assert "| cluster-node-kill | 10 | 9 | 0 | 0 | 1 | 0 | 0 | 5.0 | **FAIL** |" in text
    # Scenarios on the deployed cluster get a table (and a description) of their own.
    assert text.index("## Cluster scenarios") < text.index("| cluster-node-kill |")
    assert "`make cluster-faults`" in text and "abc123, 2026-11-29T06:00:00Z" in text
    assert expected_reply(b"x") == b"Consumer processed: x"
