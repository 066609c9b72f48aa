"""burrow's commands as real child processes (the daemons under test, one-shot CLI runs) and the
config files they read.

:class:`Daemon` starts ``burrow-consumer`` or ``burrow-producer --config FILE`` the way systemd
would (its own config file, mode 0600, its output in a log file) and waits for the line each daemon
logs when it sends systemd READY=1. The integration tests use it through the ``consumer_process``
fixture, the fault scenarios and the soak (tests/faults/daemonload.py) directly, the metrics scrape
with ``[metrics]`` on. :func:`burrow` runs ``burrow ...`` once and captures what it printed;
:func:`write_config` and :func:`write_toml` write what they read.
Nothing here needs pytest's fixtures, so scripts outside a pytest session can use it too.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from burrow.config import BurrowConfig, LoggingConfig, to_toml
from waiting import wait_for

#: This folder: the daemons import the test handlers (burrow_test_handlers) from it.
SUPPORT_DIR = Path(__file__).resolve().parent
#: How much of the end of a log (characters) a failure message quotes.
LOG_TAIL_CHARS = 3000


def command_path(command: str) -> str:
    """The console script ``command`` (burrow, burrow-consumer, burrow-producer) of the Python
    running the tests, so the code under test is the checkout's; else the first on PATH."""
    beside = Path(sys.executable).parent / command
    return str(beside) if beside.exists() else shutil.which(command) or command


def run_command(command: str, *args: str, timeout: float = 120,
                env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command *args`` to its end (stdin closed, so a prompt fails fast) and capture its
    output; ``env`` replaces the environment when given."""
    return subprocess.run([command_path(command), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env)


def burrow(*args: str, timeout: float = 120, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``burrow *args``, the operator's command, captured."""
    return run_command("burrow", *args, timeout=timeout, env=env)


def write_config(config: BurrowConfig, path: Path) -> Path:
    """Write ``config`` as TOML to ``path``, mode 0600 as the package installs it (it holds the
    broker password unless a credential file does)."""
    path.write_text(to_toml(config))
    path.chmod(0o600)
    return path


def write_toml(folder: Path, text: str, name: str = "burrow.toml") -> Path:
    """Write a hand-written config ``text`` (often a wrong one) to ``<folder>/<name>``."""
    path = folder / name
    path.write_text(text)
    return path


class Daemon:
    """One ``burrow-<role>`` process with its own config file ``<folder>/<name>.toml`` and log
    ``<folder>/<name>.log``.

    The producer serves its API on ``<folder>/<name>.sock`` (two tests never share a socket) and
    logs at DEBUG, so the log holds its per-request records (the fault tallies count republishes
    from them). ``env`` is added to the test's environment when the process starts, so a
    ``monkeypatch.setenv`` made before :meth:`start` reaches the daemon too.
    """

    #: The line each daemon logs when it tells systemd READY=1 (connected, and the producer serving).
    READY_LINE = "burrow-{role} ready"

    def __init__(self, role: str, config: BurrowConfig, folder: Path, name: str | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        if role not in ("consumer", "producer"):
            raise ValueError(f"role must be 'consumer' or 'producer', got {role!r}")
        self.role = role
        self.name = name or role
        if role == "producer":
            config = dataclasses.replace(config, logging=LoggingConfig(level="DEBUG"),
                                         producer=dataclasses.replace(config.producer, socket=str(folder / f"{self.name}.sock")))
        self.config = config
        self.config_path = write_config(config, folder / f"{self.name}.toml")
        self.log_path = folder / f"{self.name}.log"
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> str:
        """The producer's API socket."""
        return self.config.producer.socket

    def start(self) -> Daemon:
        """Start the process (it reads :attr:`config_path` now, so a test may edit the file first)."""
        env = {**os.environ, **self.extra_env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SUPPORT_DIR), env.get("PYTHONPATH")]))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([command_path(f"burrow-{self.role}"), "--config", str(self.config_path)],
                                            stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def log(self) -> str:
        """What the process has logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the daemon logs that it is ready; fails at once, quoting its log, if it exits first."""
        ready = self.READY_LINE.format(role=self.role)
        wait_for(lambda: ready in self.log() or not self.running(), timeout, f"{self.name} to log {ready!r}")
        assert self.running(), f"{self.name} exited before it was ready:\n{self.log()[-LOG_TAIL_CHARS:]}"

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would; no shutdown runs."""
        if self.running():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (the clean shutdown systemd asks for), SIGKILL if it has not ended within
        ``timeout``; returns the exit status (negative for a signal), None if never started."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def resources(self) -> dict[str, int]:
        """RSS (KiB), open file descriptors and threads of the running process, from /proc."""
        assert self.process is not None
        proc = Path(f"/proc/{self.process.pid}")
        status = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line)
        return {"rss_kib": int(status["VmRSS"].split()[0]), "threads": int(status["Threads"]),
                "fds": len(os.listdir(proc / "fd"))}
