"""Callers of the producer's API inside a container, each request's outcome recorded by its id.

The upgrade tests send numbered requests through the producer's Unix socket while they upgrade the
package under it. The client runs in the container with Debian's python3 and the standard library
only, so it does not run from the venv being replaced; :class:`Callers` starts it from a thread of
the test and reads its records.
"""

from __future__ import annotations

import json
import subprocess
import threading

from .daemonhost import SOCKET
from .nspawn import Host

#: Each worker sends ``<prefix>-<n>`` (body and X-Burrow-Request-Id) on a new connection with
#: X-Burrow-Timeout TIMEOUT, until COUNT are sent, the stop file appears or SECONDS pass, and
#: writes one JSON line per finished request: id, start and end times, status, body or error.
SCRIPT = r'''
import http.client, json, os, socket, sys, threading, time

prefix, count, workers, max_seconds, timeout, out_path, stop_path, socket_path = (
    sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), sys.argv[6],
    sys.argv[7], sys.argv[8])


class UnixConnection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(socket_path)


lock = threading.Lock()
numbers = iter(range(count))
deadline = time.monotonic() + max_seconds
out = open(out_path, "w", encoding="utf-8")


def work():
    while not os.path.exists(stop_path) and time.monotonic() < deadline:
        with lock:
            number = next(numbers, None)
        if number is None:
            return
        request_id = f"{prefix}-{number}"
        record = {"id": request_id, "start": time.time(), "status": None, "body": "", "error": None}
        try:
            connection = UnixConnection("burrow", timeout=timeout + 30)
            connection.request("POST", "/v1/requests", body=request_id.encode(),
                               headers={"Connection": "close", "X-Burrow-Request-Id": request_id,
                                        "X-Burrow-Timeout": str(timeout)})
            response = connection.getresponse()
            record["status"], record["body"] = response.status, response.read().decode(errors="replace")
            connection.close()
        except Exception as exc:
            record["error"] = repr(exc)
        record["end"] = time.time()
        with lock:
            out.write(json.dumps(record) + "\n")
            out.flush()


threads = [threading.Thread(target=work) for _ in range(workers)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
out.close()
'''
SCRIPT_PATH = "/root/callers.py"


class Callers:
    """:data:`SCRIPT` running in ``host`` from a thread of ours, its records in /root/<prefix>.jsonl.

    ``count`` requests at most, from ``workers`` connections at a time, for ``seconds`` at most or
    until ``stop_path`` exists; each request may wait ``timeout`` seconds for its answer.
    """

    def __init__(self, host: Host, prefix: str, count: int, workers: int, *, seconds: float, timeout: int,
                 stop_path: str) -> None:
        self.host, self.out, self.limit = host, f"/root/{prefix}.jsonl", seconds + timeout + 120
        host.write_file(SCRIPT_PATH, SCRIPT)
        argv = ["python3", SCRIPT_PATH, prefix, str(count), str(workers), str(seconds), str(timeout), self.out,
                stop_path, SOCKET]
        self.outcome: list[subprocess.CompletedProcess[str]] = []
        self.thread = threading.Thread(
            target=lambda: self.outcome.append(host.run(argv, check=False, timeout=self.limit)))
        self.thread.start()

    def records(self) -> list[dict[str, object]]:
        """The records so far, one per finished request."""
        text = self.host.run(["cat", self.out], check=False).stdout
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def finish(self) -> list[dict[str, object]]:
        """Wait for the client to end (the caller has bounded it) and return every record."""
        self.thread.join(self.limit + 30)
        assert self.outcome, "the callers hung"
        assert self.outcome[0].returncode == 0, self.outcome[0].stderr
        return self.records()
