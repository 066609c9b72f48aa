"""Polling with a deadline: the one wait every test, fixture and harness in the suite uses.

Tests wait on what they can observe (a queue depth, a file, a port), never on a fixed sleep; when
the deadline passes the wait fails naming what it waited for, so a slow machine and a broken
feature read differently in the log.
"""

from __future__ import annotations

import time
from typing import Callable

import pytest


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05,
             error: type[Exception] | None = None) -> None:
    """Poll ``predicate`` until it is true; at ``timeout`` seconds, fail naming ``what``.

    Failing is ``pytest.fail`` by default; harness code that must not depend on pytest's outcome
    exceptions (the nspawn hosts raise ``HarnessError``) passes its own ``error`` class. The
    predicate is polled once more at the deadline, so a timeout of 0 still checks once.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:g} s waiting for {what}"
            if error is None:
                pytest.fail(message)
            raise error(message)
        time.sleep(interval)
