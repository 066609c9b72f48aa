"""``RequestWindow``: the consumer's prefetch, one request at a time while redeliveries arrive.

After every subscribe the window is one request ("probation") and stays there while the broker hands
back redeliveries: a consumer that crashed returns every request it held, and one of them may be
the request that crashed it. Taking those one at a time means only that request is unacked when it
crashes the next consumer, so the quorum queue's delivery limit dead-letters it alone instead of
every request delivered beside it. The first fresh (not redelivered) request opens the full window;
the owner then registers again with the new prefetch (see ``Consumer._subscribe``).
"""

from __future__ import annotations

import logging
from typing import Callable

logger = logging.getLogger(__name__)


class RequestWindow:
    """Probation state of one consuming channel; ``full()`` gives the open window's size."""

    def __init__(self, full: Callable[[], int]) -> None:
        self._full = full
        self.probation = True
        self._redeliveries = 0

    def size(self) -> int:
        """The prefetch to register with now."""
        return 1 if self.probation else self._full()

    def restart(self) -> None:
        """A new consuming channel: back to one request until a fresh one arrives."""
        self.probation = True
        self._redeliveries = 0

    def on_delivery(self, redelivered: bool) -> bool:
        """Count one delivery; True when it is the fresh request that opens the full window."""
        if not self.probation:
            return False
        if redelivered:
            self._redeliveries += 1
            if self._redeliveries == 1:
                logger.info("Redelivered requests waiting: taking them one at a time until a fresh one arrives")
            return False
        if self._redeliveries:
            logger.info("Took %d redelivered requests one at a time; request window is now %d",
                        self._redeliveries, self._full())
        self.probation = False
        self._redeliveries = 0
        return True
