"""A pytest plugin (``pytest_plugins`` in tests/conftest.py): a counted scenario gets its test's
verdict.

A test that declared a counted run (``item.reliability_run``, a :class:`tallies.ScenarioRun`,
set by tests/faults/faultcheck.begin_scenario) is ended once its teardown is done, with the first
failure of its call or teardown: the run's tally is then marked failed with that reason, or
written from what was counted so far if the test died before counting. So the report never keeps
an older pass for a run that failed, whatever failed it.
"""

from __future__ import annotations

from typing import Iterator

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("call", "teardown") and not hasattr(item, "reliability_failure"):
        error = call.excinfo.exconly() if call.excinfo is not None else report.longreprtext
        item.reliability_failure = " ".join(error.split())[:300] or "failed"
    run = getattr(item, "reliability_run", None)
    if run is not None and report.when == "teardown":
        run.end(getattr(item, "reliability_failure", None))
