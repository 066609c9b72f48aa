"""Throwaway Debian "VMs" for system tests: real systemd as PID 1 in systemd-nspawn containers.

A test gets a :class:`Host` from a cached debootstrapped root (``scripts/build-root.sh``), runs
commands in it with :meth:`Host.run`, reaches it over SSH like Ansible reaches a VM, and on exit the
container is powered off (killed on a deadline) and its copy removed, even when the test failed.

Each host's root is an overlay on the cached root, so a copy costs milliseconds and nothing a test
does reaches the cache. Two network modes:

* shared (``network=None``): the container uses the host's network; sshd listens on a free
  loopback port chosen here. The simple single-host path.
* private (``network=Network()``): each container has its own network namespace, joined by a
  bridge this module creates; addresses come from a /24 that no interface here uses, and the
  host side of the bridge is ``.1`` so tests on the host reach every container.

Everything runs as root (nspawn, overlay mounts and bridges need it). The machine has no system
D-Bus and no tmpfs on /run, so containers are started with ``--keep-unit --register=no`` inside a
private mount namespace that gives nspawn its own tmpfs for /run/systemd/nspawn.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from burrow.tools.localbroker import free_port
from waiting import wait_for

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
BUILD_ROOT_SCRIPT = REPO / "scripts" / "build-root.sh"
WORK_BASE = Path(os.environ.get("BURROW_NSPAWN_WORKDIR", "/var/tmp/burrow-nspawn"))
LOCK_DIR = Path("/run/burrow-ci")
# Test subnets are 10.219.<n>.0/24; one per Network, reserved with a lock file while it lives.
SUBNET_PREFIX = "10.219"
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# systemd-nspawn exits with this status when the container rebooted (systemd-nspawn@.service
# restarts it on exactly this status: RestartForceExitStatus=133).
EXIT_REBOOT = 133
REQUIRED_TOOLS = ("systemd-nspawn", "nsenter", "unshare", "ssh-keygen", "ssh", "ip", "mount", "tar")
HOST_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
INSTALL_HINT = "run scripts/install-system-test-deps.sh (apt-get install of the system-test tools)"


class HarnessError(RuntimeError):
    """A container did not boot, stop or answer within its deadline; the message says which."""


def require_root_and_tools() -> None:
    """Raise :class:`HarnessError` unless we are root and every tool the harness calls is on PATH."""
    if os.geteuid() != 0:
        raise HarnessError("system tests need root (systemd-nspawn, overlay mounts, bridges)")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise HarnessError(f"missing tools {', '.join(missing)}: {INSTALL_HINT}")


def ensure_root(extra_packages: Sequence[str] = ()) -> Path:
    """Return the cached bookworm root with the base packages plus ``extra_packages``, building it once.

    The build script keys the cache on its own text and the package list and serialises concurrent
    builders with a lock, so parallel sessions share one root.
    """
    started = time.monotonic()
    result = subprocess.run([str(BUILD_ROOT_SCRIPT), *extra_packages], check=True, stdout=subprocess.PIPE, text=True)
    root = Path(result.stdout.strip().splitlines()[-1])
    logger.info("root %s ready in %.1f s", root, time.monotonic() - started)
    return root


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """:func:`waiting.wait_for` raising :class:`HarnessError`: the harness fails as a harness, not a test."""
    wait_for(predicate, timeout, what, interval, error=HarnessError)


@dataclass(frozen=True)
class SSHKey:
    """A throwaway ed25519 key pair; the private half never leaves the session's 0700 folder."""

    private_key: Path

    @property
    def public_key(self) -> str:
        """The ``ssh-ed25519 AAAA... comment`` line to put in authorized_keys."""
        return self.private_key.with_suffix(".pub").read_text(encoding="ascii").strip()

    @classmethod
    def generate(cls, directory: Path) -> SSHKey:
        """Create a new key pair in ``directory`` (made 0700) without a passphrase."""
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        private_key = directory / "id_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "burrow-system-tests", "-f", str(private_key)],
            check=True,
        )
        return cls(private_key)


def _interface_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Return the IPv4 networks of every address and route in this network namespace."""
    found: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for command in (["ip", "-4", "-j", "addr"], ["ip", "-4", "-j", "route"]):
        data = json.loads(subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout or "[]")
        for entry in data:
            for info in entry.get("addr_info", []):
                found.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False))
            destination = entry.get("dst")
            if destination and destination != "default":
                found.append(ipaddress.ip_network(destination, strict=False))
    return found


class Network:
    """A bridge on the host with a private /24: containers on it reach each other and the host.

    ``Network()`` reserves a subnet no local address or route overlaps (a lock file keeps
    concurrent sessions off it), creates the bridge with ``.1`` and hands out ``.2``, ``.3``, ...
    to hosts. :meth:`close` deletes the bridge; the containers' veths vanish with them.
    """

    def __init__(self) -> None:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        self._lock: IO[str] | None = None
        used = _interface_networks()
        candidates = list(range(1, 255))
        secrets.SystemRandom().shuffle(candidates)
        for third in candidates:
            subnet = ipaddress.ip_network(f"{SUBNET_PREFIX}.{third}.0/24")
            if any(subnet.overlaps(other) for other in used):
                continue
            lock_path = LOCK_DIR / f"subnet-{SUBNET_PREFIX}.{third}.lock"
            lock = open(lock_path, "w", encoding="ascii")  # noqa: SIM115 - held open while the network lives
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            self._lock = lock
            self.lock_path = lock_path
            self.subnet = subnet
            self.bridge = f"bwbr{third}"
            break
        else:
            raise HarnessError(f"no free /24 left in {SUBNET_PREFIX}.0.0/16")
        hosts = self.subnet.hosts()
        self.host_address = str(next(hosts))
        self._free = hosts
        self.members: dict[str, str] = {}
        subprocess.run(["ip", "link", "add", "name", self.bridge, "type", "bridge"], check=True)
        try:
            subprocess.run(
                ["ip", "addr", "add", f"{self.host_address}/{self.subnet.prefixlen}", "dev", self.bridge], check=True
            )
            subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True)
        except subprocess.CalledProcessError:
            self.close()
            raise
        logger.info("network %s on bridge %s, host side %s", self.subnet, self.bridge, self.host_address)

    def allocate(self, name: str) -> str:
        """Reserve the next address for the host ``name`` and return it."""
        address = str(next(self._free))
        self.members[name] = address
        return address

    def hosts_lines(self) -> str:
        """Return /etc/hosts lines for every member, so hosts can reach each other by name."""
        return "".join(f"{address}\t{name}\n" for name, address in self.members.items())

    def close(self) -> None:
        """Delete the bridge and release the subnet; safe to call twice."""
        if self._lock is None:
            return
        subprocess.run(["ip", "link", "del", self.bridge], check=False, stderr=subprocess.DEVNULL)
        self._lock.close()
        self._lock = None
        logger.info("network %s removed", self.bridge)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Host:
    """One booted container with systemd as PID 1; use it as a context manager.

    ``name`` is its hostname and inventory name. The overlay copy of ``root`` lives in a work folder
    under /var/tmp/burrow-nspawn until :meth:`close`; :meth:`stop` and :meth:`boot` keep it, so a
    test can check that units come back after a power cycle, and :meth:`reboot` lets the container
    reboot itself the way a VM does. ``nspawn_args`` are added to systemd-nspawn's command line
    (e.g. ``--bind-ro=/path``).
    """

    def __init__(
        self,
        name: str,
        root: Path,
        *,
        ssh_key: SSHKey | None = None,
        network: Network | None = None,
        boot_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        nspawn_args: Sequence[str] = (),
    ) -> None:
        if not HOST_NAME.fullmatch(name):
            raise ValueError(f"host name {name!r}: use 1-40 lower-case letters, digits and dashes")
        self.name = name
        self.root = root
        self.ssh_key = ssh_key
        self.network = network
        self.boot_timeout = boot_timeout
        self.stop_timeout = stop_timeout
        self.nspawn_args = list(nspawn_args)
        # nspawn derives the host side of the veth (vb-<machine>) from the machine name, and
        # interface names have 15 characters: a short random machine name keeps them unique.
        self.machine = f"bw{secrets.token_hex(4)}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_work_base()))
        (self.workdir / "owner").write_text(f"{os.getpid()}\n", encoding="ascii")
        self.rootdir = self.workdir / "merged"
        self.console_log = self.workdir / "console.log"
        self.address = network.allocate(name) if network else "127.0.0.1"
        self.ssh_port = 22 if network else free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._leader: int | None = None
        self._mounted = False
        try:
            self._mount_overlay()
            self._prepare()
        except BaseException:
            self.close()
            raise

    # --- life cycle -----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.boot()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            logger.warning("host %s: test failed (%s); last console lines:\n%s", self.name, exc, self.console_tail())
        self.close()

    @property
    def running(self) -> bool:
        """True while the nspawn process of this host is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def leader(self) -> int:
        """PID (on the host) of the container's systemd."""
        if self._leader is None or not self.running:
            raise HarnessError(f"host {self.name} is not running")
        return self._leader

    @property
    def nspawn_pid(self) -> int:
        """PID of the systemd-nspawn process (a test may signal it to simulate a crash)."""
        if self._process is None:
            raise HarnessError(f"host {self.name} was never booted")
        return self._process.pid

    def boot(self) -> None:
        """Start the container and return once ``systemctl is-system-running`` says running or degraded.

        nspawn runs in a private mount namespace with its own tmpfs on /run/systemd/nspawn (it refuses
        to clean its propagation folder from a /run that is not tmpfs, which would break reboots).
        """
        if self.running:
            raise HarnessError(f"host {self.name} is already running")
        nspawn = [
            "systemd-nspawn",
            "--quiet",
            "--keep-unit",
            "--register=no",
            "--boot",
            f"--machine={self.machine}",
            f"--hostname={self.name}",
            f"--directory={self.rootdir}",
            "--console=read-only",
            "--timezone=off",
            "--link-journal=no",
        ]
        if self.network:
            # No DNS in a private network: nothing outside the test's own hosts is reachable anyway.
            nspawn += [f"--network-bridge={self.network.bridge}", "--resolv-conf=off"]
        else:
            nspawn.append("--resolv-conf=copy-host")
        nspawn.extend(self.nspawn_args)
        wrapper = (
            'mkdir -p /run/systemd/nspawn && mount -t tmpfs -o mode=0755 burrow-nspawn /run/systemd/nspawn && exec "$@"'
        )
        started = time.monotonic()
        with open(self.console_log, "ab") as console:
            self._process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", wrapper, "sh", *nspawn],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._leader = None
        wait_until(self._find_leader, self.boot_timeout, f"host {self.name}'s systemd to start")
        state = self._wait_system_running(started + self.boot_timeout)
        logger.info("host %s (%s) booted in %.2f s: %s", self.name, self.address, time.monotonic() - started, state)

    def stop(self) -> None:
        """Power the container off cleanly; past ``stop_timeout`` kill it. The root copy stays."""
        if self._process is None:
            return
        if self._process.poll() is None:
            # nspawn turns SIGTERM into SIGRTMIN+3 for the container's systemd: an orderly poweroff.
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                logger.warning("host %s did not power off within %.0f s: killing it", self.name, self.stop_timeout)
                if self._leader is not None:
                    # Killing PID 1 of the container's PID namespace kills every process in it.
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self._leader, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=self.stop_timeout)
                if self._leader is not None:
                    # The kernel tears the PID namespace down asynchronously after the kill.
                    wait_until(_process_gone(self._leader), self.stop_timeout, f"host {self.name}'s systemd to die")
        logger.info("host %s stopped (nspawn exit status %s)", self.name, self._process.returncode)
        self._process = None
        self._leader = None

    def power_cut(self) -> None:
        """Pull the plug: the link goes down first (no FIN or RST reaches anyone), then every process
        of the container is SIGKILLed at once. The root copy stays, so :meth:`boot` brings it back."""
        if self.network is not None:
            self.set_link(up=False)
        if self._leader is not None:
            # Killing PID 1 of the container's PID namespace kills every process in it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._leader, signal.SIGKILL)
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=self.stop_timeout)
        if self._leader is not None:
            wait_until(_process_gone(self._leader), self.stop_timeout, f"host {self.name}'s systemd to die")
        logger.info("host %s: power cut", self.name)
        self._process = None
        self._leader = None

    def set_link(self, *, up: bool) -> None:
        """Take this host's network link down (cable pulled) or up again, from the host's side.

        The container keeps its address and routes; while the link is down nothing reaches it or
        leaves it, and no connection is told.
        """
        if self.network is None:
            raise HarnessError(f"host {self.name} shares the host's network: it has no link of its own")
        # nspawn names the host side of a bridged veth after the machine.
        subprocess.run(["ip", "link", "set", f"vb-{self.machine}", "up" if up else "down"], check=True)
        logger.info("host %s: link %s", self.name, "up" if up else "down")

    def reboot(self) -> None:
        """Reboot from inside (``systemctl reboot``) like a VM, then boot the same root again.

        nspawn ends with status 133 when its container reboots; like systemd-nspawn@.service, the
        harness then starts it again.
        """
        process = self._process
        if process is None or process.poll() is not None:
            raise HarnessError(f"host {self.name} is not running")
        self.run(["systemctl", "--no-block", "reboot"], check=False)
        try:
            status = process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(
                f"host {self.name} did not go down for reboot within {self.stop_timeout:.0f} s"
            ) from None
        if status != EXIT_REBOOT:
            raise HarnessError(f"host {self.name}: nspawn exited with {status} instead of {EXIT_REBOOT} on reboot")
        self._process = None
        self._leader = None
        self.boot()

    def close(self) -> None:
        """Stop the container (if running), unmount and delete its copy. Safe to call twice."""
        try:
            self.stop()
        finally:
            if self._mounted:
                subprocess.run(["umount", str(self.rootdir)], check=True)
                self._mounted = False
            if self.workdir.exists():
                shutil.rmtree(self.workdir)
                logger.info("host %s: copy %s removed", self.name, self.workdir)

    # --- commands -------------------------------------------------------------------------------

    def run(
        self,
        command: str | Sequence[str],
        *,
        check: bool = True,
        input: bytes | str | None = None,
        timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` inside the container as root and return its result (text, output captured).

        A string runs through ``sh -c``; a list runs as it is. The environment is a clean one from the
        container (PATH, HOME, LANG) plus ``env``, never the test process's own. With ``check`` a
        non-zero exit raises ``CalledProcessError`` whose message carries stdout and stderr.
        """
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        environment = {"PATH": CONTAINER_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
        environment.update(env or {})
        data = input.encode() if isinstance(input, str) else input
        result = subprocess.run(
            ["nsenter", f"--target={self.leader}", "--all", "--", *argv],
            check=False,
            input=data,
            capture_output=True,
            env=environment,
            timeout=timeout,
        )
        completed = subprocess.CompletedProcess(
            result.args,
            result.returncode,
            result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )
        if check and completed.returncode != 0:
            raise HostCommandError(self.name, argv, completed)
        return completed

    def popen(self, command: Sequence[str], *, stdout: IO[bytes] | int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        """Start ``command`` inside the container in the background (as :meth:`run`, without waiting)."""
        environment = {"PATH": CONTAINER_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
        return subprocess.Popen(
            ["nsenter", f"--target={self.leader}", "--all", "--", *command],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            env=environment,
        )

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``systemctl ARGS`` in the container."""
        return self.run(["systemctl", *args], check=check)

    def write_file(self, path: str, content: str | bytes, mode: int = 0o644, owner: str = "root:root") -> None:
        """Create or replace the file ``path`` in the container (parents made), then set mode and owner."""
        script = 'mkdir -p "$(dirname "$1")" && cat >"$1" && chmod "$2" "$1" && chown "$3" "$1"'
        self.run(["sh", "-c", script, "sh", path, f"{mode:o}", owner], input=content)

    def copy_in(self, source: str | os.PathLike[str], destination: str) -> None:
        """Copy a file or a folder from the host to ``destination`` in the container (tar stream).

        Going through the container's own tar (not the overlay's host path) means symlinks on the way
        resolve inside the container, as they would on a VM.
        """
        source_path = Path(source)
        if source_path.is_dir():
            archive = subprocess.run(
                ["tar", "-C", str(source_path), "-cf", "-", "."], check=True, stdout=subprocess.PIPE
            ).stdout
            self.run(["sh", "-c", 'mkdir -p "$1" && tar -C "$1" -xf -', "sh", destination], input=archive)
        else:
            mode = source_path.stat().st_mode & 0o7777
            self.write_file(destination, source_path.read_bytes(), mode=mode)

    def journal(self, unit: str | None = None, *, lines: int | None = None, output: str = "short-iso") -> str:
        """Return the journal of ``unit`` (or the whole journal) since boot as text."""
        command = ["journalctl", "--no-pager", "--boot", f"--output={output}"]
        if unit:
            command.append(f"--unit={unit}")
        if lines:
            command.append(f"--lines={lines}")
        return self.run(command).stdout

    def journal_json(self, unit: str | None = None, *matches: str) -> list[dict[str, Any]]:
        """Return journal entries (``journalctl -o json``) of ``unit`` filtered by ``FIELD=value`` matches."""
        command = ["journalctl", "--no-pager", "--boot", "--output=json"]
        if unit:
            command.append(f"--unit={unit}")
        command.extend(matches)
        return [json.loads(line) for line in self.run(command).stdout.splitlines() if line.strip()]

    def console_tail(self, lines: int = 30) -> str:
        """Return the last lines the container wrote to its console (boot messages, nspawn errors)."""
        if not self.console_log.exists():
            return ""
        text = self.console_log.read_bytes().decode(errors="replace").replace("\r", "")
        return "\n".join(text.splitlines()[-lines:])

    # --- SSH and Ansible ------------------------------------------------------------------------

    def inventory_vars(self) -> dict[str, str]:
        """The host variables an Ansible inventory needs to reach this host over SSH as root."""
        if self.ssh_key is None:
            raise HarnessError(f"host {self.name} was created without an SSH key")
        return {
            "ansible_host": self.address,
            "ansible_port": str(self.ssh_port),
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.ssh_key.private_key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    def ssh_command(self, *command: str) -> list[str]:
        """Return the ``ssh`` argv that runs ``command`` on this host with the session key."""
        if self.ssh_key is None:
            raise HarnessError(f"host {self.name} was created without an SSH key")
        return [
            "ssh",
            "-i",
            str(self.ssh_key.private_key),
            "-p",
            str(self.ssh_port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
            f"root@{self.address}",
            "--",
            *command,
        ]

    def wait_for_ssh(self, timeout: float = 30.0) -> None:
        """Poll until an SSH login with the session key runs ``true`` on this host."""

        def answers() -> bool:
            return (
                subprocess.run(
                    self.ssh_command("true"), check=False, stdin=subprocess.DEVNULL, capture_output=True
                ).returncode
                == 0
            )

        wait_until(answers, timeout, f"SSH on {self.name} ({self.address}:{self.ssh_port})", interval=0.2)

    def update_hosts_file(self) -> None:
        """Write every member of this host's network into its /etc/hosts (call after all booted)."""
        if self.network is None:
            return
        base = f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{self.name}\n"
        self.write_file("/etc/hosts", base + self.network.hosts_lines())

    # --- internals ------------------------------------------------------------------------------

    def _mount_overlay(self) -> None:
        """Mount an overlay of the cached root (read-only lower) on ``rootdir``; writes go to upper."""
        for part in ("upper", "work", "merged"):
            (self.workdir / part).mkdir()
        options = f"lowerdir={self.root},upperdir={self.workdir / 'upper'},workdir={self.workdir / 'work'}"
        subprocess.run(["mount", "-t", "overlay", "burrow-root", "-o", options, str(self.rootdir)], check=True)
        self._mounted = True

    def _prepare(self) -> None:
        """Before the first boot: hostname, SSH access, and (private network) host0's address."""
        etc = self.rootdir / "etc"
        (etc / "hostname").write_text(f"{self.name}\n", encoding="ascii")
        (etc / "hosts").write_text(
            f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{self.name}\n",
            encoding="ascii",
        )
        if self.ssh_key:
            ssh_dir = self.rootdir / "root" / ".ssh"
            ssh_dir.mkdir(mode=0o700, exist_ok=True)
            authorized = ssh_dir / "authorized_keys"
            authorized.write_text(self.ssh_key.public_key + "\n", encoding="ascii")
            authorized.chmod(0o600)
        listen = "ListenAddress 0.0.0.0\n" if self.network else "ListenAddress 127.0.0.1\n"
        (etc / "ssh" / "sshd_config.d" / "20-burrow-harness.conf").write_text(
            f"Port {self.ssh_port}\n{listen}", encoding="ascii"
        )
        if self.network:
            (etc / "resolv.conf").unlink(missing_ok=True)
            self._configure_private_network(etc, self.network.subnet.prefixlen)

    def _configure_private_network(self, etc: Path, prefixlen: int) -> None:
        """Give host0 its static address with systemd-networkd, which then also drives network-online."""
        network_dir = etc / "systemd" / "network"
        network_dir.mkdir(parents=True, exist_ok=True)
        (network_dir / "10-burrow-host0.network").write_text(
            "[Match]\nName=host0\n\n[Network]\n"
            f"Address={self.address}/{prefixlen}\n"
            "LinkLocalAddressing=no\nIPv6AcceptRA=no\n",
            encoding="ascii",
        )
        units = {
            "multi-user.target.wants": "systemd-networkd.service",
            "sockets.target.wants": "systemd-networkd.socket",
            "network-online.target.wants": "systemd-networkd-wait-online.service",
        }
        for wants, unit in units.items():
            folder = etc / "systemd" / "system" / wants
            folder.mkdir(parents=True, exist_ok=True)
            link = folder / unit
            link.unlink(missing_ok=True)
            link.symlink_to(f"/lib/systemd/system/{unit}")

    def _find_leader(self) -> bool:
        """Look for the container's systemd among nspawn's children; remember its PID when found."""
        process = self._process
        if process is None or process.poll() is not None:
            raise HarnessError(
                f"host {self.name}: systemd-nspawn exited with {process.returncode if process else None}:\n"
                + self.console_tail()
            )
        for pid in _children(process.pid):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    self._leader = pid
                    return True
        return False

    def _wait_system_running(self, deadline: float) -> str:
        """Poll ``systemctl is-system-running`` until running/degraded; log failed units if degraded."""
        state = ""
        while time.monotonic() < deadline:
            if not self.running:
                raise HarnessError(f"host {self.name}: nspawn exited while booting:\n{self.console_tail()}")
            state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
            if state in ("running", "degraded"):
                if state == "degraded":
                    failed = self.run(["systemctl", "--failed", "--no-legend"], check=False).stdout
                    logger.warning("host %s booted degraded; failed units:\n%s", self.name, failed)
                return state
            time.sleep(0.1)
        raise HarnessError(f"host {self.name} not running after boot (last state {state!r}):\n{self.console_tail()}")


class HostCommandError(subprocess.CalledProcessError):
    """A command in a container failed; ``str()`` shows the host, command, status and both outputs."""

    def __init__(self, host: str, argv: Sequence[str], completed: subprocess.CompletedProcess[str]) -> None:
        super().__init__(completed.returncode, list(argv), completed.stdout, completed.stderr)
        self.host = host

    def __str__(self) -> str:
        return (
            f"on {self.host}: {shlex.join(self.cmd)} exited with {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )


def _process_gone(pid: int) -> Callable[[], bool]:
    """Return a predicate that is true once no process ``pid`` exists (not even as a zombie)."""
    return lambda: not Path(f"/proc/{pid}").exists()


def _children(pid: int) -> list[int]:
    """Return the PIDs whose parent is ``pid`` (from /proc/<pid>/task/*/children)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children.extend(int(child) for child in (task / "children").read_text().split())
    return children


def reap_stale() -> None:
    """Remove what killed test sessions left behind: their containers, overlay copies and bridges.

    A copy is stale when the test process that made it (its ``owner`` file) is gone; its nspawn is
    found by the copy's path in its command line. A bridge is stale when nobody holds its subnet lock.
    Called once per session before the first host boots, so a crashed run cannot starve the next one.
    """
    if WORK_BASE.is_dir():
        for workdir in WORK_BASE.iterdir():
            owner = workdir / "owner"
            with contextlib.suppress(OSError, ValueError):
                if Path(f"/proc/{int(owner.read_text())}").exists():
                    continue
            _kill_nspawn_of(workdir / "merged")
            merged = workdir / "merged"
            if os.path.ismount(merged):
                subprocess.run(["umount", str(merged)], check=True)
            shutil.rmtree(workdir)
            logger.warning("removed the stale host copy %s", workdir)
    if LOCK_DIR.is_dir():
        for lock_path in LOCK_DIR.glob(f"subnet-{SUBNET_PREFIX}.*.lock"):
            bridge = f"bwbr{lock_path.name.split('.')[-2]}"
            with open(lock_path, "w", encoding="ascii") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                if subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True).returncode == 0:
                    logger.warning("removed the stale bridge %s", bridge)


def _kill_nspawn_of(rootdir: Path) -> None:
    """SIGKILL the container booted from ``rootdir`` (its systemd first, then nspawn) and wait for both."""
    marker = f"--directory={rootdir}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker not in (proc / "cmdline").read_bytes().split(b"\0"):
                continue
            victims = [*_children(int(proc.name)), int(proc.name)]
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for pid in victims:
                wait_until(_process_gone(pid), 10, f"stale process {pid} to die")


def _work_base() -> Path:
    """Create (0700) and return the folder the host copies live in."""
    WORK_BASE.mkdir(parents=True, exist_ok=True)
    WORK_BASE.chmod(0o700)
    return WORK_BASE


def write_inventory(
    path: Path, groups: Mapping[str, Sequence[Host]], extra_vars: Mapping[str, Any] | None = None
) -> Path:
    """Write an Ansible YAML inventory (as JSON, which YAML parsers read) for ``groups`` of hosts.

    Each host appears under ``all.hosts`` with its connection variables and in every group listed;
    ``extra_vars`` go to ``all.vars``. The file is 0600: it names the private key.
    """
    hosts: dict[str, dict[str, str]] = {}
    children: dict[str, dict[str, dict[str, None]]] = {}
    for group, members in groups.items():
        children[group] = {"hosts": {}}
        for host in members:
            hosts[host.name] = host.inventory_vars()
            children[group]["hosts"][host.name] = None
    document = {"all": {"hosts": hosts, "children": children, "vars": dict(extra_vars or {})}}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def hosts(
    root: Path, names: Sequence[str], *, ssh_key: SSHKey | None = None, private_network: bool = False
) -> Iterator[list[Host]]:
    """Boot several hosts (on one new private network when asked) and tear all of them down at exit."""
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(Network()) if private_network else None
        booted = [stack.enter_context(Host(name, root, ssh_key=ssh_key, network=network)) for name in names]
        for host in booted:
            host.update_hosts_file()
        yield booted
