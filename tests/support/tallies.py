"""The life of one counted scenario run on disk: its tally, its failure, its place in the history.

Every campaign that counts a scenario (tests/faults, scripts/soak.py, tests/system/test_cluster.py)
declares the run when it starts (:class:`ScenarioRun`), saves the tally when it has counted
(:meth:`ScenarioRun.save`), and ends it with the test's own verdict (:meth:`ScenarioRun.end`,
called by the ``pytest_runtest_makereport`` hook in tests/conftest.py, or by a script itself). So a
run leaves, in :func:`provenance.results_dir`:

- ``<scenario>.json``: the last run's tally with ``result`` (``pass``/``fail``) and, when it
  failed, ``reason``: written even when the run died before it could count, then with only what
  was measured up to that moment;
- ``failed/<scenario>-<date>.json``: a copy of every failed run's tally, never overwritten by a
  later pass;
- ``history/<scenario>.jsonl``: one line per run (date, revision, result, reason, the kept copy),
  from which scripts/render_reliability.py shows "runs / failed" beside each result.

Standard library only, so that scripts outside pytest can use it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

from provenance import git_revision, results_dir

logger = logging.getLogger(__name__)

FAILED_DIR = "failed"
HISTORY_DIR = "history"
#: The checkout's revision when this process started (a long run may outlive a commit).
REVISION = git_revision()


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


class ScenarioRun:
    """One run of ``scenario``, from its start to its verdict.

    ``partial`` (optional) returns the tally document of what was counted so far: :meth:`end`
    saves it, marked failed, when the run dies before :meth:`save` was called, so that a run
    which never got to count still leaves its failure (and the requests it had in flight).
    """

    def __init__(self, scenario: str, title: str, command: str, folder: Path | None = None) -> None:
        self.scenario = scenario
        self.title = title
        self.command = command
        self.folder = folder or results_dir()
        self.started = utc_now()
        self.partial: Callable[[], dict[str, Any]] | None = None
        self.document: dict[str, Any] | None = None
        self.ended = False

    @property
    def path(self) -> Path:
        return self.folder / f"{self.scenario}.json"

    def save(self, counts: dict[str, Any], reason: str | None = None) -> Path:
        """Write the counted tally; ``reason`` (why the counts fail) makes it ``result: fail``."""
        document = {**counts, "scenario": self.scenario, "title": self.title, "command": self.command,
                    "revision": REVISION, "date": utc_now()}
        document["result"] = "fail" if reason else "pass"
        if reason:
            document["reason"] = reason
        self.document = document
        write_json(self.path, document)
        return self.path

    def end(self, failure: str | None) -> None:
        """The run's verdict (``failure`` is the test's error, None when it passed): mark the tally
        failed (or write one if nothing was counted), keep a copy of a failed one, add the history
        line. Only the first call counts (a test can fail in its call and again in teardown)."""
        if self.ended:
            return
        self.ended = True
        if self.document is None:
            counts: dict[str, Any] = {}
            if self.partial is not None:
                try:
                    counts = self.partial()
                except Exception as exc:  # the run is failing already; keep its own reason first
                    logger.warning("Could not count the partial run of %s: %s", self.scenario, exc)
            failure = failure or "the run ended without counting"
            self.save(counts, f"died before counting: {failure}")
        elif failure and self.document["result"] == "pass":
            self.document["result"] = "fail"
            self.document["reason"] = f"failed after counting: {failure}"
            write_json(self.path, self.document)
        assert self.document is not None
        line: dict[str, Any] = {"date": self.document["date"], "revision": REVISION,
                                "result": self.document["result"], "started": self.started}
        if self.document["result"] == "fail":
            kept = Path(FAILED_DIR) / f"{self.scenario}-{self.document['date'].replace(':', '')}.json"
            write_json(self.folder / kept, self.document)
            line.update(reason=self.document.get("reason", ""), tally=str(kept))
        history = self.folder / HISTORY_DIR / f"{self.scenario}.jsonl"
        history.parent.mkdir(parents=True, exist_ok=True)
        with history.open("a") as out:
            out.write(json.dumps(line, sort_keys=True) + "\n")
