"""Steady request load through the producer daemon's HTTP API, run inside the producer host.

``python3 cluster_load.py --count N --rate R --concurrency C --timeout T --prefix P --out FILE [--stop-file S]``
sends N requests (fewer if the file S appears: it stops handing out new ids then, and prints how
many it handed out), at most R per second from C threads, to ``POST /v1/requests`` on the producer's
Unix socket, each with its own id (``P-000001``...) as body and ``X-Burrow-Request-Id``, and
``X-Burrow-Timeout: T``. Every request's outcome is appended to FILE as one JSON line as soon as it
is known (id, HTTP status or the client error, whether the reply was the expected one, start and
end time, its timeout, the correlation id the daemon gave it (``X-Burrow-Correlation-Id``) and the
body of any other answer than the expected reply: a 504's says whether the broker had confirmed the
request), so the test can follow progress and explain each non-answer by id after the run. Standard library only: it runs with Debian's
python3, outside the system under test. Bounded: N requests, and each waits at most T + 15 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import queue
import socket
import threading
import time

logger = logging.getLogger(__name__)

SOCKET = "/run/burrow/producer.sock"
REPLY_PREFIX = "Consumer processed: "


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the producer's Unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("burrow", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def send(request_id: str, timeout: float) -> dict[str, object]:
    """POST one request and return its outcome; a client-side failure becomes ``error``."""
    started = time.time()
    outcome: dict[str, object] = {"id": request_id, "start": started, "timeout": timeout}
    connection = UnixHTTPConnection(SOCKET, timeout + 15)
    try:
        connection.request(
            "POST", "/v1/requests", body=request_id.encode(),
            headers={"X-Burrow-Timeout": str(timeout), "X-Burrow-Request-Id": request_id},
        )
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        outcome["status"] = response.status
        outcome["correlation_id"] = response.getheader("X-Burrow-Correlation-Id") or ""
        outcome["ok"] = response.status == 200 and body == REPLY_PREFIX + request_id
        if not outcome["ok"]:
            outcome["body"] = body[:1000]
    except OSError as exc:
        outcome["status"] = None
        outcome["ok"] = False
        outcome["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    outcome["end"] = time.time()
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--stop-file", default="")
    args = parser.parse_args()

    ids: queue.Queue[str | None] = queue.Queue(maxsize=args.concurrency)
    lock = threading.Lock()

    with open(args.out, "a", encoding="utf-8") as out:

        def worker() -> None:
            while (request_id := ids.get()) is not None:
                outcome = send(request_id, args.timeout)
                with lock:
                    out.write(json.dumps(outcome) + "\n")
                    out.flush()

        workers = [threading.Thread(target=worker, daemon=True) for _ in range(args.concurrency)]
        for thread in workers:
            thread.start()
        # The pacer hands out ids at the target rate; a full queue (every worker busy) slows it down.
        started = time.monotonic()
        handed_out = 0
        for n in range(1, args.count + 1):
            delay = started + (n - 1) / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if args.stop_file and os.path.exists(args.stop_file):
                break
            ids.put(f"{args.prefix}-{n:06d}")
            handed_out = n
        print(f"sent {handed_out}", flush=True)
        for _ in workers:
            ids.put(None)
        for thread in workers:
            thread.join()


if __name__ == "__main__":
    main()
