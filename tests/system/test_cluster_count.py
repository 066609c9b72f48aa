"""The cluster scenarios' accounting alone (cluster_count.py), on records in cluster_load.py's shape
and journal records in journalctl's: no host is booted, so these run with the unit tests.

Each non-answer is explained for its own id or counted lost: a 503 outside the producer's outage
window, a 504 before its deadline, and a 504 that never ran, is in no dead-letter queue and was
confirmed by the broker are lost; a refused connection is refused; an id without a record is lost.
A 503 inside the window, a 504 the broker never confirmed, one dead-lettered by its correlation id
and one that ran late are explained.
"""

from __future__ import annotations

from typing import Any

from explain import BY_DEAD_LETTER, BY_HANDLER, BY_UNCONFIRMED, BY_WINDOW

from .cluster_count import caller_counts, dead_letters_holding, explain_outcomes, load_outcomes

TIMEOUT = 30.0
LATE = TIMEOUT + 0.2


def record(number: int, start: float, end: float, status: int | None, **fields: Any) -> dict[str, Any]:
    return {"id": f"s-{number:06d}", "start": start, "end": end, "timeout": TIMEOUT, "status": status,
            "ok": status == 200, **fields}


def timeout_body(cid: str, confirmed: str) -> str:
    return f'{{"error": "timeout", "message": "m", "correlation_id": "{cid}", "confirmed": {confirmed}}}'


#: The producer lost its broker from 11 s to 14 s (journalctl -o json, MESSAGE as the daemon logs it);
#: the same words from another logger open no window.
JOURNAL = [
    {"__REALTIME_TIMESTAMP": "11000000", "LOGGER": "burrow.amqp.setup",
     "MESSAGE": "Producer: connection to broker1:5672 lost: (320, 'CONNECTION_FORCED'); retrying in 0.6s on broker2"},
    {"__REALTIME_TIMESTAMP": "12000000", "LOGGER": "burrow.http", "MESSAGE": "Producer connected to nothing"},
    {"__REALTIME_TIMESTAMP": "14000000", "LOGGER": "burrow.amqp.setup",
     "MESSAGE": "Producer connected to broker2:5672 (RabbitMQ 4.0.5, stale quorum leader workaround off)"},
    {"__REALTIME_TIMESTAMP": "40000000", "LOGGER": "burrow.consumer",
     "MESSAGE": "Producer: connection to broker2:5672 lost: not ours"},
]


def explained(*records: dict[str, Any], ran: set[bytes] = frozenset(), dead: dict[str, str] | None = None
              ) -> tuple[dict[str, str], dict[str, Any]]:
    """Each id's result after explain, and the tally's fields."""
    ids = {str(entry["id"]) for entry in records}
    outcomes, fields = explain_outcomes(load_outcomes(list(records), ids, TIMEOUT), set(ran), JOURNAL,
                                        lambda: dict(dead or {}), dead_letter_wait=0)
    return {outcome.body.decode(): outcome.result for outcome in outcomes}, fields


def test_a_503_counts_only_inside_the_producers_outage_window() -> None:
    results, fields = explained(record(1, 10.0, 12.0, 503, body='{"error": "unavailable"}'),
                                record(2, 30.0, 31.0, 503, body='{"error": "unavailable"}'))
    assert results == {"s-000001": "503", "s-000002": "lost"}
    assert fields["outage_windows"] == [[11.0, 14.0]]
    why = {entry["id"]: entry for entry in fields["non_answers"]}
    assert why["s-000001"]["explained_by"] == BY_WINDOW
    assert "outside every outage window [[11.0, 14.0]]" in why["s-000002"]["why"]
    assert (why["s-000002"]["sent_at"], why["s-000002"]["done_at"]) == (30.0, 31.0)


def test_a_504_before_its_deadline_is_lost_even_unconfirmed() -> None:
    results, fields = explained(record(1, 0.0, TIMEOUT - 1.0, 504, correlation_id="c1", body=timeout_body("c1", "false")))
    assert results == {"s-000001": "lost"}
    assert "before its 30s deadline" in fields["non_answers"][0]["why"]


def test_a_confirmed_504_that_never_ran_and_is_in_no_dead_letter_queue_is_lost() -> None:
    results, fields = explained(record(1, 0.0, LATE, 504, correlation_id="c1", body=timeout_body("c1", "true")),
                                dead={"c-other": "expired"})
    assert results == {"s-000001": "lost"}
    assert fields["non_answers"][0]["why"].endswith(
        "not in the dead-letter queue (correlation id c1); the broker had confirmed it")


def test_a_504_the_broker_never_confirmed_is_explained() -> None:
    results, fields = explained(record(1, 0.0, LATE, 504, correlation_id="c1", body=timeout_body("c1", "false")))
    assert results == {"s-000001": "504"}
    assert fields["non_answers"][0]["explained_by"] == BY_UNCONFIRMED


def test_a_504_dead_lettered_by_its_correlation_id_is_explained_with_the_reason() -> None:
    results, fields = explained(record(1, 0.0, LATE, 504, correlation_id="c1", body=timeout_body("c1", "true")),
                                record(2, 0.0, LATE, 504, correlation_id="c2", body=timeout_body("c2", "true")),
                                ran={b"s-000002"}, dead={"c1": "rejected"})
    assert results == {"s-000001": "504", "s-000002": "504"}
    assert [entry["explained_by"] for entry in fields["non_answers"]] == [BY_DEAD_LETTER + "rejected", BY_HANDLER]
    assert fields["explained"] == {"504 dead-lettered: rejected": 1, "504 ran in a handler": 1}


def test_refused_connections_and_ids_without_a_record_are_counted_apart() -> None:
    ids = {f"s-{n:06d}" for n in (1, 2, 3)}
    listed = [record(1, 0.0, 0.1, 200, correlation_id="c1"),
              record(2, 0.0, 0.0, None, error="ConnectionRefusedError: [Errno 111] Connection refused")]
    outcomes, _ = explain_outcomes(load_outcomes(listed, ids, TIMEOUT), {b"s-000001"}, JOURNAL, dict,
                                   dead_letter_wait=0)
    assert caller_counts(outcomes) == {"answered": 1, "failed_503": 0, "failed_504": 0, "refused": 1, "lost": 1}


def test_the_dead_letter_queue_is_read_again_until_it_holds_every_never_run_504() -> None:
    reads = iter([{}, {"c1": "rejected"}, {"c1": "rejected", "c2": "expired"}])
    assert dead_letters_holding(lambda: next(reads), {"c1"}, 10) == {"c1": "rejected"}
    # A wait that runs out returns the last read; the id missing from it stays unexplained.
    assert dead_letters_holding(dict, {"c1"}, 0) == {}
