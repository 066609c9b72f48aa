"""The peers users compare burrow with: Celery (``rpc://``), nameko and aio-pika's RPC pattern.

Each peer runs in its own virtualenv, built from PyPI on first use from its pinned
``requirements-<peer>.txt`` and cached under ``$BURROW_CI_CACHE/bench-peers/<peer>-<key>`` (the
key hashes the requirements and the Python), so ``make bench-peers`` on a fresh clone builds them
once. Its server and client are the scripts beside this file, run with that venv's Python and
driven over stdin/stdout by :class:`PeerProcess`, which the harness treats like its other children.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("BURROW_CI_CACHE", "/var/cache/burrow-ci")) / "bench-peers"
PYTHON = "/usr/bin/python3"
READY_TIMEOUT = 120.0

#: name -> (script, requirements file)
PEERS = {
    "celery": ("celery_peer.py", "requirements-celery.txt"),
    "nameko": ("nameko_peer.py", "requirements-nameko.txt"),
    "aio-pika": ("aiopika_peer.py", "requirements-aiopika.txt"),
}


def peer_python(name: str) -> Path:
    """The Python of ``name``'s venv, built (once, under a lock) if missing."""
    _script, requirements = PEERS[name]
    text = (HERE / requirements).read_text()
    version = subprocess.run([PYTHON, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256((text + version).encode()).hexdigest()[:16]
    venv = CACHE / f"{name}-{key}"
    if not (venv / ".complete").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / f".{name}-{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (venv / ".complete").exists():
                print(f"        building the {name} venv in {venv}", file=sys.stderr, flush=True)
                shutil.rmtree(venv, ignore_errors=True)
                subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
                subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-r", str(HERE / requirements)],
                               check=True, stdout=subprocess.DEVNULL)
                (venv / ".complete").touch()
    return venv / "bin" / "python"


class PeerProcess:
    """A peer's server or client script, speaking :mod:`peerloop`'s JSON lines on stdin/stdout.

    Same interface as the harness's ``Child``: ``pid``, ``wait_ready``, ``command``, ``stop``.
    A server's other output (Celery's banner) is skipped while waiting for its ready line.
    """

    def __init__(self, peer: str, role: str, amqp_url: str, log_path: Path) -> None:
        self.name = f"{peer}-{role}"
        self.role = role
        script, _requirements = PEERS[peer]
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen([str(peer_python(peer)), str(HERE / script), role, amqp_url],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                        text=True, bufsize=1, cwd=HERE)
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def receive(self, timeout: float, skip_other: bool = False) -> dict[str, Any]:
        """The next JSON line; raise if none comes within ``timeout`` or it reports an error."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.process.stdout], [], [], remaining)[0]:
                raise RuntimeError(f"{self.name} (pid {self.pid}) sent nothing within {timeout:.0f}s; see {self.log_path}")
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited ({self.process.poll()}); see {self.log_path}")
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                if skip_other:
                    continue
                raise RuntimeError(f"{self.name} printed {line!r}") from None
            if "error" in message:
                raise RuntimeError(f"{self.name}: {message['error']}")
            return message

    def wait_ready(self) -> None:
        self.receive(READY_TIMEOUT, skip_other=True)

    def command(self, *command: Any, timeout: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(list(command)) + "\n")
        self.process.stdin.flush()
        return self.receive(timeout)

    def stop(self, graceful: bool = True) -> None:
        """A client is asked to stop; a server (or an unresponsive client) gets SIGTERM, then SIGKILL."""
        if graceful and self.role == "client" and self.process.poll() is None:
            with contextlib.suppress(OSError, RuntimeError):
                self.command("stop", timeout=15)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
