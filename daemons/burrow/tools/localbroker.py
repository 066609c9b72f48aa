"""A throwaway RabbitMQ node from Debian's ``rabbitmq-server``, for the demo, tests and benchmarks.

``LocalBroker`` starts a private node on free loopback ports in its own directory, waits until it
accepts AMQP connections, and removes everything when stopped. It needs the ``rabbitmq-server``
package installed (``apt-get install rabbitmq-server``); it never touches the system's own node.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

RABBITMQ_SERVER = "/usr/sbin/rabbitmq-server"
RABBITMQCTL = "/usr/sbin/rabbitmqctl"


class LocalBrokerError(RuntimeError):
    """The node did not start or stop; the message says where its log is."""


@dataclass(frozen=True)
class TLSListener:
    """PEM files for an extra TLS listener on 127.0.0.1 (``LocalBroker.tls_port``).

    The node verifies clients against ``ca_file``; with ``require_client_cert`` it refuses a client
    that presents no certificate. The files must be readable by the ``rabbitmq`` user.
    """

    ca_file: str
    cert_file: str
    key_file: str
    require_client_cert: bool = True


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalBroker:
    """One throwaway RabbitMQ node listening on 127.0.0.1:``port``.

    Use it as a context manager, or call :meth:`start` and :meth:`close`. :meth:`stop` and
    :meth:`start` may be called again in between to restart the node on the same data, which is
    how tests check that durable queues and persistent messages survive a broker restart.
    """

    def __init__(
        self,
        name: str | None = None,
        base_dir: str | None = None,
        start_timeout: float = 60.0,
        *,
        tls: TLSListener | None = None,
        extra_listeners: tuple[str, ...] = (),
        guest_loopback_only: bool = False,
    ) -> None:
        self.name = name or f"burrow-{uuid.uuid4().hex[:8]}"
        self.nodename = f"{self.name}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.start_timeout = start_timeout
        self.tls = tls
        self.tls_port = free_port() if tls is not None else None
        self.extra_listeners = extra_listeners
        self.guest_loopback_only = guest_loopback_only
        self._own_dir = base_dir is None
        self.dir = Path(base_dir or tempfile.mkdtemp(prefix=f"{self.name}-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._prepare_dir()

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def log_dir(self) -> Path:
        return self.dir / "log"

    def _prepare_dir(self) -> None:
        """Lay out mnesia/log/config folders, owned by the user the node will run as."""
        for sub in ("mnesia", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        lines = [
            f"listeners.tcp.default = 127.0.0.1:{self.port}",
            "log.console = false",
            "log.file.level = info",
            "vm_memory_high_watermark.relative = 0.4",
            "disk_free_limit.absolute = 50MB",
        ]
        if not self.guest_loopback_only:
            lines.append("loopback_users = none")
        for number, address in enumerate(self.extra_listeners, start=2):
            lines.append(f"listeners.tcp.{number} = {address}")
        if self.tls is not None:
            lines += [
                f"listeners.ssl.default = 127.0.0.1:{self.tls_port}",
                f"ssl_options.cacertfile = {self.tls.ca_file}",
                f"ssl_options.certfile = {self.tls.cert_file}",
                f"ssl_options.keyfile = {self.tls.key_file}",
                "ssl_options.verify = verify_peer",
                f"ssl_options.fail_if_no_peer_cert = {'true' if self.tls.require_client_cert else 'false'}",
            ]
        (self.dir / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        # Partitioned services route through the consistent-hash exchange (burrow.partitions).
        (self.dir / "enabled_plugins").write_text("[rabbitmq_consistent_hash_exchange].\n")
        if os.geteuid() == 0:
            # Debian's wrapper drops root to the rabbitmq user, who must own the node's folders.
            entry = pwd.getpwnam("rabbitmq")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            for path in self.dir.rglob("*"):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if not self.extra_listeners:
            # These override every listeners.tcp.* line, so nodes with extra listeners go without.
            env.update(RABBITMQ_NODE_IP_ADDRESS="127.0.0.1", RABBITMQ_NODE_PORT=str(self.port))
        env.update(
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.log_dir),
            RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(self.dir / "node.pid"),
        )
        return env

    def start(self) -> "LocalBroker":
        """Start the node and return once it accepts AMQP connections (or raise, naming its log)."""
        if not Path(RABBITMQ_SERVER).exists():
            raise LocalBrokerError(f"{RABBITMQ_SERVER} is missing: apt-get install rabbitmq-server")
        logger.info("Starting RabbitMQ node %s on 127.0.0.1:%d in %s", self.nodename, self.port, self.dir)
        self._process = subprocess.Popen(
            [RABBITMQ_SERVER],
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "server.stderr", "ab"),
            start_new_session=True,
        )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise LocalBrokerError(f"RabbitMQ node {self.nodename} exited early; see {self.log_dir}")
            try:
                result = self.ctl("await_startup", "--timeout", "5", check=False, timeout=30)
            except subprocess.TimeoutExpired:
                # On a starved host the CLI's own VM can take longer than that to start: ask again
                # until start_timeout, like any other answer that the node is not up yet.
                logger.info("rabbitmqctl await_startup for %s did not answer within 30s; asking again", self.nodename)
                continue
            if result.returncode == 0:
                logger.info("RabbitMQ node %s is up", self.nodename)
                return
        raise LocalBrokerError(f"RabbitMQ node {self.nodename} did not start in {self.start_timeout:.0f}s; see {self.log_dir}")

    def ctl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n NODE ARGS`` and return its result (raising on failure when ``check``)."""
        result = subprocess.run(
            [RABBITMQCTL, "-n", self.nodename, *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise LocalBrokerError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result

    def set_memory_watermark(self, fraction: float) -> None:
        """``rabbitmqctl set_vm_memory_high_watermark``: 0 raises the memory alarm at once (every
        publishing connection is blocked); 0.4 is the default that clears it again."""
        self.ctl("set_vm_memory_high_watermark", repr(fraction))

    def pause(self) -> None:
        """SIGSTOP the Erlang VM: the node keeps its sockets but answers nothing, like a hung host."""
        os.kill(self.os_pid(), signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the Erlang VM after :meth:`pause`."""
        os.kill(self.os_pid(), signal.SIGCONT)

    @property
    def running(self) -> bool:
        """True from :meth:`start` until the node is stopped, killed or exits."""
        return self._process is not None and self._process.poll() is None

    def kill(self, timeout: float = 30.0) -> None:
        """SIGKILL the Erlang VM, like a host losing power; the data stays for :meth:`start`."""
        if self._process is None:
            return
        logger.info("Killing RabbitMQ node %s (SIGKILL)", self.nodename)
        with contextlib.suppress(ProcessLookupError, FileNotFoundError, ValueError):
            os.kill(self.os_pid(), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait(timeout=timeout)
        self._process = None

    def os_pid(self) -> int:
        """The Erlang VM's process id (for SIGSTOP/SIGCONT fault tests)."""
        return int((self.dir / "node.pid").read_text().strip())

    def queue_depth(self, queue: str, vhost: str = "/") -> int:
        """Ready + unacknowledged messages in ``queue`` (0 if the queue does not exist)."""
        result = self.ctl("list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "messages")
        for line in result.stdout.splitlines():
            fields = line.split("\t")
            if len(fields) == 2 and fields[0] == queue:
                return int(fields[1])
        return 0

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the node cleanly, keeping its data so :meth:`start` brings the same queues back."""
        if self._process is None:
            return
        logger.info("Stopping RabbitMQ node %s", self.nodename)
        self.ctl("stop", check=False, timeout=timeout)
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)
        self._process = None

    def crash(self, timeout: float = 30.0) -> None:
        """SIGKILL the node's whole process group, like a power cut of its host: no clean shutdown,
        nothing flushed beyond what the node had already written. :meth:`start` then restarts
        it on the same data, so tests see what a crashed broker keeps."""
        if self._process is None:
            return
        logger.info("Killing RabbitMQ node %s (SIGKILL)", self.nodename)
        beam = self.os_pid()
        # Debian's wrapper runs the VM under su, in a session of its own: kill that group (the
        # VM and its shell), then the wrapper's. epmd is shared by every node and stays.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(beam), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{beam}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._process = None

    def close(self) -> None:
        """Stop the node and remove its directory (when this object created it)."""
        try:
            self.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "LocalBroker":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
