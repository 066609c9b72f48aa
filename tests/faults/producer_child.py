"""A producer process the fault tests SIGKILL with requests in flight.

Usage: ``producer_child.py CONFIG COUNT OUTCOME``. Submits COUNT requests ``first-<n>`` through a
plain :class:`~burrow.producer.Producer` and, as their caller, appends one line per event to
OUTCOME, flushed at once so that the lines survive the kill: ``submitting <body>`` before each
submit, ``confirmed <body>`` when the broker acked its publish (publisher confirm), and
``answered <body> <reply as hex>`` when its future resolves with a reply. The parent compares them
with what the handlers ran and with the replies left in the reply queue, and can say of a request
that got neither whether the broker ever had it.
"""

from __future__ import annotations

import logging
import sys
import threading
from concurrent.futures import Future
from typing import TextIO

import pika

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


class ConfirmRecordingProducer(Producer):
    """A producer that writes ``confirmed <body>`` for each request the broker acked: the requests
    its confirm tracker held before an ack and no longer holds after it."""

    def __init__(self, config: object, out: TextIO, lock: threading.Lock) -> None:
        super().__init__(config)  # type: ignore[arg-type]
        self.out = out
        self.lock = lock

    def on_confirm(self, frame: pika.frame.Method) -> None:
        before = self._confirms.pending()
        super().on_confirm(frame)
        if isinstance(frame.method, pika.spec.Basic.Ack):
            still = {id(request) for request in self._confirms.pending()}
            for request in before:
                if id(request) not in still:
                    write(self.out, self.lock, f"confirmed {request.body.decode()}")


def main(config_path: str, count: int, outcome: str) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = load_config(config_path)
    lock = threading.Lock()
    with open(outcome, "a", buffering=1) as out:
        producer = ConfirmRecordingProducer(config, out, lock).start(wait=30)
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
