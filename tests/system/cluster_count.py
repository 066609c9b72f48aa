"""The callers' side of a cluster scenario's tally, by request id, each non-answer explained.

``cluster_load.py`` (inside the producer host) writes one JSON record per request: its id, start
and end time, timeout, HTTP status or client error, whether the reply was its own, the correlation
id the producer daemon gave it and the body of any other answer. :func:`load_outcomes` turns them
into the :class:`explain.Outcome` that tests/support/explain.py explains, the same as the loopback
fault scenarios: a 503 only while the producer's own journal says it had no broker connection, a
504 only at or after its deadline and, for a request that never ran in any handler, only when the
dead-letter queue holds it by its correlation id or the 504 said ``"confirmed": false``. Whatever
is not explained is ``lost``; a refused connection to the producer's socket is ``refused``.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Callable

from explain import Outcome, explain, journal_outage_windows, said_confirmed  # tests/support
from waiting import wait_for

logger = logging.getLogger(__name__)

#: The client errors of a connection nothing accepted: the producer daemon was not there.
REFUSED_ERRORS = ("ConnectionRefusedError", "FileNotFoundError")
#: The callers' side of a tally, in the report's order.
FIELDS = ("answered", "failed_503", "failed_504", "refused", "lost")
RESULT_FIELDS = {"answered": "answered", "503": "failed_503", "504": "failed_504", "refused": "refused"}
#: Seconds to wait, after a scenario, for a never-run 504's request to show in the dead-letter
#: queue (its late copy is dead-lettered once it comes back to the queue and a consumer sees it).
DEAD_LETTER_WAIT = 60


def outcome_of(request_id: str, record: dict[str, Any] | None, timeout: float) -> Outcome:
    """One request's record as an :class:`~explain.Outcome` (no record at all: ``lost``)."""
    body = request_id.encode()
    if record is None:
        return Outcome(body, "lost", 0, "no outcome recorded", timeout=timeout)
    status, text, error = record.get("status"), str(record.get("body", "")), str(record.get("error") or "")
    if record.get("ok"):
        result, detail = "answered", ""
    elif status in (503, 504):
        result, detail = str(status), text[:200]
    elif error.startswith(REFUSED_ERRORS):
        result, detail = "refused", error
    else:
        result, detail = "lost", error if status is None else f"HTTP {status}: {text[:100]}"
    return Outcome(body, result, detail=detail, sent_at=record.get("start"), done_at=record.get("end"),
                   timeout=float(record.get("timeout") or timeout),
                   correlation_id=str(record.get("correlation_id") or ""),
                   confirmed=said_confirmed(text) if status == 504 else None)


def load_outcomes(listed: list[dict[str, Any]], expected_ids: set[str], timeout: float) -> list[Outcome]:
    """One outcome per id the load handed out, in id order."""
    records = {str(record["id"]): record for record in listed}
    return [outcome_of(request_id, records.get(request_id), timeout) for request_id in sorted(expected_ids)]


def caller_counts(outcomes: list[Outcome]) -> dict[str, int]:
    """``answered``, ``failed_503``, ``failed_504``, ``refused``, and ``lost`` for everything else."""
    counts = collections.Counter(RESULT_FIELDS.get(outcome.result, "lost") for outcome in outcomes)
    return {name: counts[name] for name in FIELDS}


def unexplained_504s(outcomes: list[Outcome], ran: set[bytes]) -> set[str]:
    """Correlation ids of the 504s that only the dead-letter queue can explain: never ran, and not
    said to be unconfirmed."""
    return {outcome.correlation_id for outcome in outcomes
            if outcome.result == "504" and outcome.body not in ran and outcome.confirmed is not False
            and outcome.correlation_id}


def dead_letters_holding(read: Callable[[], dict[str, str]], wanted: set[str], timeout: float) -> dict[str, str]:
    """The dead-letter queue by correlation id, read again (each read gives every letter back)
    until it holds every id in ``wanted`` or ``timeout`` seconds pass: the consumers dead-letter
    a late copy only once it comes back to the queue after the fault. The last read is returned
    either way; an id still missing stays unexplained (lost)."""
    found: dict[str, str] = {}

    def holds_all() -> bool:
        found.clear()
        found.update(read())
        return wanted <= found.keys()

    try:
        wait_for(holds_all, timeout, "the never-run 504s in the dead-letter queue", 2.0, error=TimeoutError)
    except TimeoutError:
        missing = sorted(wanted - found.keys())
        logger.warning("%d 504s never ran and are not in the dead-letter queue, e.g. %s", len(missing), missing[:5])
    return found


def explained_by(records: list[dict[str, Any]]) -> dict[str, int]:
    """How many non-answers each explanation covered (``504 dead-lettered: rejected``...), and
    ``lost``/``refused``: the tally's notes."""
    kinds: collections.Counter[str] = collections.Counter()
    for record in records:
        by = record.get("explained_by")
        kinds[f"{record['result']} {by}" if by else str(record["result"])] += 1
    return dict(sorted(kinds.items()))


def explain_outcomes(outcomes: list[Outcome], ran: set[bytes], journal: list[dict[str, Any]],
                     read_dead: Callable[[], dict[str, str]], dead_letter_wait: float = DEAD_LETTER_WAIT,
                     ) -> tuple[list[Outcome], dict[str, Any]]:
    """Explain each non-answer by id (tests/support/explain.py): the producer's outage windows from
    its journal records, the dead-letter queue read (again, for a while, until it holds every
    never-run 504 that only it can explain). Returns the outcomes, lost where unexplained, and the
    tally's fields: the windows, one record per non-answer, and how many each explanation covered."""
    windows = journal_outage_windows(journal)
    wanted = unexplained_504s(outcomes, ran)
    dead = dead_letters_holding(read_dead, wanted, dead_letter_wait) if wanted else {}
    outcomes, records = explain(outcomes, ran, windows, dead)
    return outcomes, {"outage_windows": [window.as_list() for window in windows], "non_answers": records,
                      "explained": explained_by(records)}
