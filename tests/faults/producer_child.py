"""A producer process the fault tests SIGKILL with requests in flight.

Usage: ``producer_child.py CONFIG COUNT OUTCOME``. Submits COUNT requests ``first-<n>`` through a
:class:`faultcheck.CountingProducer` and appends one line per event to OUTCOME, flushed at once so
that the lines survive the kill: ``confirmed <body>`` when the broker acked the request and
``answered <body>`` when its reply came back. The parent compares them with what the consumer ran.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import pika
import pika.spec

from burrow.config import load_config
from faultcheck import CountingProducer

logger = logging.getLogger(__name__)


class RecordingProducer(CountingProducer):
    """Writes each confirm to the outcome file as the broker sends it."""

    def __init__(self, config: Any, out: Any, lock: threading.Lock) -> None:
        super().__init__(config)
        self._out = out
        self._out_lock = lock

    def on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        if isinstance(method, pika.spec.Basic.Ack):
            for request in self._confirms.peek(method.delivery_tag, method.multiple):
                write(self._out, self._out_lock, f"confirmed {request.body.decode()}")
        super().on_confirm(frame)


def write(out: Any, lock: threading.Lock, line: str) -> None:
    with lock:
        out.write(line + "\n")
        out.flush()


def main(config_path: str, count: int, outcome: str) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = load_config(config_path)
    lock = threading.Lock()
    with open(outcome, "a", buffering=1) as out:
        producer = RecordingProducer(config, out, lock).start(wait=30)
        futures = []
        for n in range(count):
            body = f"first-{n}"
            future = producer.submit(body.encode(), timeout=120)
            future.add_done_callback(
                lambda f, b=body: f.exception() is None and write(out, lock, f"answered {b}"))
            futures.append(future)
        for future in futures:
            future.exception(timeout=180)
        producer.stop(timeout=0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
