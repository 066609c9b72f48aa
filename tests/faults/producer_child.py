"""A producer process the fault tests SIGKILL with requests in flight.

Usage: ``producer_child.py CONFIG COUNT OUTCOME``. Submits COUNT requests ``first-<n>`` through a
plain :class:`~burrow.producer.Producer` and, as their caller, appends one line per event to
OUTCOME, flushed at once so that the lines survive the kill: ``submitting <body>`` before each
submit, and ``answered <body> <reply as hex>`` when its future resolves with a reply. The parent
compares them with what the handlers ran and with the replies left in the reply queue.
"""

from __future__ import annotations

import logging
import sys
import threading
from concurrent.futures import Future
from typing import TextIO

from burrow.config import load_config
from burrow.producer import Producer

logger = logging.getLogger(__name__)


def write(out: TextIO, lock: threading.Lock, line: str) -> None:
    with lock:
        out.write(line + "\n")
        out.flush()


def record_answer(out: TextIO, lock: threading.Lock, body: str, future: Future) -> None:
    if future.exception() is None:
        write(out, lock, f"answered {body} {future.result().hex()}")


def main(config_path: str, count: int, outcome: str) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = load_config(config_path)
    lock = threading.Lock()
    with open(outcome, "a", buffering=1) as out:
        producer = Producer(config).start(wait=30)
        futures = []
        for n in range(count):
            body = f"first-{n}"
            write(out, lock, f"submitting {body}")
            future = producer.submit(body.encode(), timeout=120)
            future.add_done_callback(lambda f, b=body: record_answer(out, lock, b, f))
            futures.append(future)
        for future in futures:
            future.exception(timeout=180)
        producer.stop(timeout=0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
