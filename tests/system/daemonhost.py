"""What the daemon system tests share: a container's broker users, unit properties, config edits.

test_daemons.py, test_upgrade.py and test_upgrade_release.py install a .deb into a container that
runs its own RabbitMQ; these helpers install a package with apt-get, give the two daemons their
least-privilege broker users and root-only credential files, read unit properties and change one
config key.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from broker_permissions import permissions  # tests/support

from .nspawn import Host, Network, ensure_root, require_root_and_tools, wait_until

logger = logging.getLogger(__name__)

SOCKET = "/run/burrow/producer.sock"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
#: Least-privilege broker permissions (configure, write, read) per daemon's user, as the Ansible
#: roles grant them (ansible/group_vars/brokers/burrow.yml), the dead-letter notice queue included.
PERMISSIONS = {f"burrow-{role}": granted for role, granted in permissions().items()}


@contextlib.contextmanager
def broker_box(name: str, suite: str) -> Iterator[Host]:
    """A booted container of Debian ``suite`` with its RabbitMQ active, on a network of its own."""
    require_root_and_tools()
    root = ensure_root(["rabbitmq-server"], suite)
    with Network() as network, Host(name, root, network=network, boot_timeout=90) as host:
        wait_active(host, "rabbitmq-server.service", 120)
        yield host


def deb_version(deb: Path) -> str:
    """The Version field of a .deb."""
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Version"], check=True, capture_output=True, text=True
    ).stdout.strip()


def apt(host: Host, *args: str) -> subprocess.CompletedProcess[str]:
    """``apt-get -y ARGS`` in the container, logging how long it took."""
    started = time.monotonic()
    result = host.run(["apt-get", "-y", *args], env=APT_ENV, timeout=300)
    logger.info("apt-get %s took %.1f s", " ".join(args), time.monotonic() - started)
    return result


def add_broker_users(host: Host, permissions: Mapping[str, tuple[str, str, str]] = PERMISSIONS) -> None:
    """Create each daemon's broker user with a random password, stored as its credential file (0600).

    ``permissions`` maps each user to its (configure, write, read) regexes (default: what the roles
    grant today). The container's RabbitMQ must be active. Passwords go over stdin, never argv:
    Debian's wrapper runs rabbitmqctl through su, whose command line journald would record.
    """
    host.run(["mkdir", "-p", "-m", "0700", "/etc/burrow/credentials"])
    for user, (configure, write, read) in permissions.items():
        password = secrets.token_urlsafe(18)
        host.run(["rabbitmqctl", "add_user", user], input=password + "\n", timeout=60)
        host.run(["rabbitmqctl", "set_permissions", "-p", "/", user, configure, write, read], timeout=60)
        role = user.removeprefix("burrow-")
        host.write_file(f"/etc/burrow/credentials/{role}-amqp-password", password + "\n", 0o600)


def show(host: Host, unit: str, prop: str) -> str:
    """One property of a unit, as ``systemctl show -p PROP --value`` prints it."""
    return host.run(["systemctl", "show", "-p", prop, "--value", unit]).stdout.strip()


def wait_active(host: Host, unit: str, timeout: float = 60.0) -> None:
    """Poll until ``unit`` is active (for the Type=notify daemons: connected to the broker)."""
    wait_until(lambda: show(host, unit, "ActiveState") == "active", timeout, f"{unit} to become active")


def set_option(host: Host, role: str, key: str, value: str, path: str | None = None) -> None:
    """Replace the first ``key = ...`` line of /etc/burrow/<role>.toml (keys are unique in them)."""
    path = path or f"/etc/burrow/{role}.toml"
    text = host.run(["cat", path]).stdout
    pattern = re.compile(rf"^{key} = .*$", re.MULTILINE)
    assert pattern.search(text), f"{key} not in {path}"
    host.write_file(path, pattern.sub(f"{key} = {value}", text, count=1), 0o640, "root:burrow")


def curl_request(host: Host, body: str, *headers: str) -> tuple[int, dict[str, str], str]:
    """POST ``body`` to the producer's socket with curl; status, headers (lower-case), body."""
    argv = ["curl", "-sS", "--max-time", "60", "--unix-socket", SOCKET, "-D", "/dev/stderr", "--data-binary", body]
    for header in headers:
        argv += ["-H", header]
    result = host.run([*argv, "http://burrow/v1/requests"])
    head = result.stderr.replace("\r", "").strip().split("\n\n")[-1].splitlines()
    status = int(head[0].split()[1])
    fields = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:])}
    return status, fields, result.stdout
