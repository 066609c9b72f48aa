"""The checker itself: each count it makes can be non-zero, per request, not in total; each
non-answer is explained for its own id or counted lost; a run that dies still leaves its tally;
the report judges by the counts and keeps failures."""

from __future__ import annotations

import collections
import dataclasses
import json
from concurrent.futures import Future
from pathlib import Path

import pytest

from burrow.errors import RequestTimeout

from daemonload import HttpLoad
from explain import Window, explain, outage_windows, said_confirmed
from faultcheck import Outcome, Run, Tally, count, expected_reply, future_outcome
from render_reliability import checks_from_junit, load_history, load_tallies, passed, render

pytestmark = pytest.mark.faults
pytest_plugins = ["pytester"]


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
                Outcome(b"d", "504"), Outcome(b"e", "lost", 0), Outcome(b"f", "unexpected"), Outcome(b"g", "refused", 0)]
    tally = count(Tally("t", "t", allow_errors=True), outcomes, runs(b"a", "1", False) + runs(b"b", "2", False)
                  + runs(b"f", "3", False))
    assert (tally.sent, tally.answered, tally.failed_503, tally.failed_504, tally.refused, tally.lost, tally.unexpected,
            tally.answered_twice) == (7, 2, 1, 1, 1, 1, 1, 1)
    assert tally.bad() == {"lost": 1, "refused": 1, "unexpected": 1, "answered_twice": 1}


def test_an_answer_no_handler_made_is_unexpected() -> None:
    tally = count(Tally("t", "t"), answered(b"a", b"b"), runs(b"a", "1", False))
    assert tally.unexpected == 1 and not tally.ok


def test_unmeasured_fields_are_left_out_of_the_tally() -> None:
    """Without a handler log or republish records those counts were not measured: absent, not 0."""
    document = count(Tally("t", "t"), answered(b"a"), None).document()
    for unmeasured in ("handler_runs", "duplicates_explained", "duplicates_unexplained", "republished", "reconnects",
                       "recovered_from_queue", "died_with_caller", "outage_windows"):
        assert unmeasured not in document
    assert document["sent"] == 1 and document["refused"] == 0
    assert "| t | 1 | 1 | 0 | 0 | 0 | n/a | n/a |" in render([{**document, "revision": "r", "date": "d"}], None)


# --------------------------------------------------------------------- each non-answer, per id


def request(body: bytes, result: str, sent_at: float, done_at: float, correlation_id: str = "",
            timeout: float = 30.0) -> Outcome:
    return Outcome(body, result, sent_at=sent_at, done_at=done_at, timeout=timeout, correlation_id=correlation_id)


def test_a_503_outside_every_outage_window_is_lost() -> None:
    windows = [Window(100.0, 105.0)]
    outcomes, records = explain([request(b"in", "503", 101.0, 106.0), request(b"before", "503", 90.0, 95.0),
                                 request(b"after", "503", 110.0, 111.0)], set(), windows, {})
    assert [outcome.result for outcome in outcomes] == ["503", "lost", "lost"]
    assert "outside every outage window" in records[1]["why"] and records[2]["id"] == "after"
    # A scenario that measured no window explains no 503, and one with none (the producer never
    # lost its broker) explains none either.
    assert explain([request(b"in", "503", 101.0, 106.0)], set(), None, {})[0][0].result == "lost"
    assert explain([request(b"in", "503", 101.0, 106.0)], set(), [], {})[0][0].result == "lost"
    tally = count(Tally("t", "t", allow_errors=True), outcomes, None)
    assert (tally.failed_503, tally.lost) == (1, 2) and not tally.ok


def test_a_504_before_its_deadline_is_lost() -> None:
    outcomes, records = explain([request(b"early", "504", 100.0, 120.0), request(b"late", "504", 100.0, 130.0)],
                                {b"early", b"late"}, [], {})
    assert [outcome.result for outcome in outcomes] == ["lost", "504"]
    assert "before its 30s deadline" in records[0]["why"]


def test_a_504_whose_request_never_ran_is_lost_unless_dead_lettered_by_its_id() -> None:
    outcomes, records = explain([request(b"ran", "504", 0.0, 31.0, "c-ran"), request(b"dead", "504", 0.0, 31.0, "c-dead"),
                                 request(b"nowhere", "504", 0.0, 31.0, "c-nowhere")],
                                {b"ran"}, [], {"c-dead": "expired", "c-other": "rejected"})
    assert [outcome.result for outcome in outcomes] == ["504", "504", "lost"]
    assert "dead-lettered as expired" in records[1]["why"]
    assert "not in the dead-letter queue" in records[2]["why"] and records[2]["correlation_id"] == "c-nowhere"
    # Without reading the dead-letter queue, a 504 that never ran is not explained.
    assert explain([request(b"dead", "504", 0.0, 31.0, "c-dead")], set(), [], None)[0][0].result == "lost"


def test_a_504_the_broker_never_confirmed_is_explained_and_a_confirmed_one_nowhere_is_lost() -> None:
    """Issue 23: a request the broker never confirmed before its deadline (a cut-off leader could not
    take it) never ran and is in no queue: explained. One it confirmed and that is nowhere: lost."""
    unconfirmed = dataclasses.replace(request(b"unconfirmed", "504", 0.0, 31.0, "c-1"), confirmed=False)
    confirmed = dataclasses.replace(request(b"confirmed", "504", 0.0, 31.0, "c-2"), confirmed=True)
    outcomes, records = explain([unconfirmed, confirmed], set(), [], {})
    assert [outcome.result for outcome in outcomes] == ["504", "lost"]
    assert records[0]["why"] == "504 after 31.000s (deadline 30s); never confirmed by the broker, never ran"
    assert records[1]["why"].endswith("not in the dead-letter queue (correlation id c-2); the broker had confirmed it")
    # Before its deadline it is lost all the same.
    early = dataclasses.replace(request(b"early", "504", 0.0, 20.0, "c-3"), confirmed=False)
    assert explain([early], set(), [], {})[0][0].result == "lost"


def test_the_504_answer_and_the_library_error_say_whether_the_broker_confirmed() -> None:
    """What reaches explain.py: the HTTP answer's ``"confirmed"`` and ``RequestTimeout.confirmed``."""
    assert said_confirmed(b'{"error": "timeout", "message": "m", "confirmed": false}\n') is False
    assert said_confirmed(b'{"error": "timeout", "message": "m", "confirmed": true}\n') is True
    for unsaid in (b'{"error": "timeout", "confirmed": null}', b'{"error": "rejected", "reason": "stale"}', b"<html>"):
        assert said_confirmed(unsaid) is None
    future: Future = Future()
    future.set_exception(RequestTimeout("late", confirmed=False))
    assert future_outcome(b"x", future).confirmed is False


def test_the_outage_windows_come_from_the_producers_own_log() -> None:
    log = """\
2026-12-02 07:00:00,000 INFO burrow.amqp.setup: Producer connected to 127.0.0.1:5672
2026-12-02 07:00:10,000 WARNING burrow.amqp.setup: Producer: connection to 127.0.0.1:5672 lost: (320, 'x'); retrying
2026-12-02 07:00:10,500 DEBUG burrow.amqp.setup: Producer: connection to 127.0.0.1:5672 lost: refused; retrying
2026-12-02 07:00:14,250 INFO burrow.amqp.setup: Producer connected to 127.0.0.1:5672 after 3 failed attempts
2026-12-02 07:00:20,000 WARNING burrow.amqp.setup: Producer: connection to 127.0.0.1:5672 lost: (320, 'y'); retrying
"""
    windows = outage_windows(log)
    assert [(round(w.end - w.start, 3) if w.end else None) for w in windows] == [4.25, None]


def test_a_refused_connection_fails_a_consumer_fault_scenario(tmp_path: Path) -> None:
    """Nothing listening on the producer's socket (the daemon died): "refused", never a 503, and
    a scenario that allows 503/504 still fails."""
    outcomes = HttpLoad(str(tmp_path / "gone.sock"), 3, prefix="refused", rate=100, clients=1).start().finish(10)
    assert {outcome.result for outcome in outcomes} == {"refused"}
    tally = count(Tally("daemons-consumer-sigkill", "t", allow_errors=True), outcomes, [])
    assert (tally.refused, tally.failed_503) == (3, 0) and tally.bad() == {"refused": 3}


def test_producer_restart_tells_answered_from_recovered_and_died_with_caller() -> None:
    outcomes = [Outcome(b"a", "answered"), Outcome(b"b", "recovered"), Outcome(b"c", "died-with-caller", 0),
                Outcome(b"d", "lost", 0, "never ran; confirmed by the broker")]
    tally = count(Tally("producer-restart", "t", recovered_from_queue=0, died_with_caller=0), outcomes,
                  runs(b"a", "1", False) + runs(b"b", "2", False))
    assert (tally.answered, tally.recovered_from_queue, tally.died_with_caller, tally.lost) == (1, 1, 1, 1)
    assert tally.bad() == {"lost": 1}


# ------------------------------------------------------------------ runs that die, the report


DIES = """
from daemonload import HttpLoad
from faultcheck import begin_scenario, wait_for


def test_dies(request):
    begin_scenario(request, "dies-early", "A scenario that dies before counting")
    HttpLoad("/nonexistent-burrow-folder/gone.sock", 2, prefix="early", rate=100, clients=1).start().finish(10)
    wait_for(lambda: False, 0, "the fault to bite")
"""


def test_a_scenario_that_dies_before_counting_leaves_a_failed_tally(pytester: pytest.Pytester, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    monkeypatch.setenv("BURROW_RELIABILITY_DIR", str(results))
    (results / "dies-early.json").parent.mkdir()
    (results / "dies-early.json").write_text(json.dumps({"scenario": "dies-early", "sent": 2, "answered": 2, "lost": 0,
                                                         "result": "pass", "revision": "old"}))
    pytester.makepyfile(test_dies=DIES)
    pytester.runpytest_inprocess("-p", "verdicts", "-p", "no:cacheprovider").assert_outcomes(failed=1)
    tally = json.loads((results / "dies-early.json").read_text())
    assert tally["result"] == "fail" and "timed out after 0 s waiting for the fault to bite" in tally["reason"]
    assert tally["reason"].startswith("died before counting")
    assert (tally["sent"], tally["refused"]) == (2, 2), "what was counted before it died is kept, by id"
    (line,) = load_history(results)["dies-early"]
    assert line["result"] == "fail" and (results / line["tally"]).exists()
    text = render(load_tallies(results), None, load_history(results))
    assert "| dies-early | 2 | 0 | 0 | 0 | 0 | n/a | n/a |" in text and "**FAIL** | 1 / 1 |" in text
    assert "## Failed runs" in text and line["tally"] in text


def test_the_checks_keep_every_fault_and_cluster_test_case(tmp_path: Path) -> None:
    """A counted scenario that errored before it could count shows in the checks too."""
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.faults.test_fault_scenarios" name="test_poison" time="3.0">'
        '<error message="fixture failed"/></testcase>'
        '<testcase classname="tests.faults.test_cluster_clients" name="test_kill_the_consumers_node" time="9.0"/>'
        '<testcase classname="tests.faults.test_bad_config" name="test_missing_file" time="0.1"/>'
        '</testsuite></testsuites>')
    cases = {case["nodeid"]: case["outcome"] for case in checks_from_junit(junit)}
    assert cases == {"tests/faults/test_fault_scenarios.py::test_poison": "ERROR",
                     "tests/faults/test_cluster_clients.py::test_kill_the_consumers_node": "passed",
                     "tests/faults/test_bad_config.py::test_missing_file": "passed"}


def test_the_report_refuses_a_missing_or_empty_results_folder(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no such results folder"):
        load_tallies(tmp_path / "missing")
    with pytest.raises(SystemExit, match="no scenario tallies"):
        load_tallies(tmp_path)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SystemExit, match="not a readable JSON tally"):
        load_tallies(tmp_path)


def test_the_report_renders_a_tally_of_the_shared_shape_and_judges_it_by_its_counts(tmp_path) -> None:
    """Another campaign's tally (only the shared keys, plus one unknown) renders in the same table;
    the result is recomputed from the counts, not taken from the tally's own word."""
    cluster = {"scenario": "cluster-node-kill", "command": "make cluster-faults", "revision": "abc123",
               "date": "2026-11-29T06:00:00Z", "sent": 10, "answered": 9, "failed_503": 0, "failed_504": 0,
               "lost": 1, "duplicates_explained": 0, "duplicates_unexplained": 0, "duration_s": 5.0,
               "ok": True, "nodes": 3}
    assert not passed(cluster)
    assert passed({**cluster, "answered": 10, "lost": 0})
    assert not passed({**cluster, "answered": 10, "lost": 0, "result": "fail", "reason": "the fault did not bite"})
    assert not passed({**cluster, "answered": 10, "lost": 0, "refused": 1})
    history = {"cluster-node-kill": [{"revision": "abc123", "result": "pass"}, {"revision": "abc123", "result": "fail"},
                                     {"revision": "older", "result": "fail"}]}
    text = render([json.loads(json.dumps(cluster))], None, history)
    assert "| cluster-node-kill | 10 | 9 | 0 | 0 | 1 | 0 | 0 | 5.0 | **FAIL** | 2 / 1 (all revisions: 3 / 2) |" in text
    # 503s and 504s allowed in bulk but not explained per id do not read as a plain pass.
    bulk = {**cluster, "answered": 8, "lost": 0, "failed_504": 2, "allow_errors": True}
    assert "| 5.0 | pass, 2 503/504 not explained per id | n/a |" in render([bulk], None)
    assert "| 5.0 | pass | n/a |" in render([{**bulk, "non_answers": []}], None)
    # Scenarios on the deployed cluster get a table (and a description) of their own.
    assert text.index("## Cluster scenarios") < text.index("| cluster-node-kill |")
    assert "`make cluster-faults`" in text and "abc123, 2026-11-29T06:00:00Z" in text
    assert expected_reply(b"x") == b"Consumer processed: x"
