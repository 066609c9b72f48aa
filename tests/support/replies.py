"""What a caller got for each request, for tests that count replies by request id."""

from __future__ import annotations

from concurrent.futures import Future


def reply_or_error(future: Future, timeout: float) -> object:
    """The reply, or ``repr`` of the error the caller got instead (a timeout, a dead letter...)."""
    try:
        return future.result(timeout=timeout)
    except Exception as error:  # noqa: BLE001 - the caller counts every non-answer by id
        return repr(error)
