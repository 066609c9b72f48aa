"""One package per Debian release: each serves on its own release and refuses the other.

For each release (``suite``) a booted container of that release with Debian's RabbitMQ gets both
packages. The other release's package must not install (its venv runs another python3, which its
Depends name), and must leave nothing behind; this release's package installs, its daemons start,
a request gets the consumer's answer, and ``apt-get purge`` leaves no file of the package, no unit
and no running daemon.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .daemonhost import SOCKET, add_broker_users, broker_box, wait_active
from .nspawn import RELEASES, Host

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
DAEMONS = ("burrow-consumer.service", "burrow-producer.service")


def other_suite(suite: str) -> str:
    """The release that is not ``suite`` (there are two)."""
    (other,) = (name for name in RELEASES if name != suite)
    return other


def depends(deb: Path) -> str:
    """The Depends field of a .deb."""
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Depends"], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def host(suite: str) -> Iterator[Host]:
    """A booted container of ``suite`` with RabbitMQ running, on a network of its own."""
    with broker_box("release", suite) as booted:
        yield booted


def test_each_package_names_its_releases_python3_and_version(suite: str, deb_for: Callable[[str], Path]) -> None:
    major, python = RELEASES[suite]
    minor = int(python.split(".")[1])
    deb = deb_for(suite)
    assert f"python3 (>= {python}), python3 (<< 3.{minor + 1})" in depends(deb)
    assert f"~deb{major}u1_" in deb.name
    lintian = deb.with_name(deb.name.removesuffix(".deb") + ".lintian.txt").read_text(encoding="utf-8")
    assert not [line for line in lintian.splitlines() if line.startswith(("E:", "W:"))], lintian


def test_the_other_releases_package_refuses_to_install(host: Host, suite: str, deb_for: Callable[[str], Path]) -> None:
    host.copy_in(deb_for(other_suite(suite)), "/root/other.deb")
    refused = host.run(["apt-get", "install", "-y", "/root/other.deb"], check=False, env=APT_ENV, timeout=300)
    logger.info("apt-get install of the other release's package:\n%s%s", refused.stdout[-1500:], refused.stderr)
    assert refused.returncode != 0, "the other release's package installed"
    assert "Depends: python3 (" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    assert host.run(["dpkg-query", "-W", "burrow"], check=False).returncode != 0, "a half-installed package stayed"
    assert host.run(["test", "-e", "/opt/venvs/burrow"], check=False).returncode != 0


def test_the_releases_package_installs_serves_a_request_and_purges_cleanly(
    host: Host, suite: str, deb_for: Callable[[str], Path]
) -> None:
    host.copy_in(deb_for(suite), "/root/burrow.deb")
    host.run(["apt-get", "install", "-y", "/root/burrow.deb"], env=APT_ENV, timeout=300)
    add_broker_users(host)
    # Consumer first: it declares the request queue, which the producer's broker user may only use.
    host.systemctl("enable", "--now", "burrow-consumer.service")
    wait_active(host, "burrow-consumer.service", 120)
    host.systemctl("enable", "--now", "burrow-producer.service")
    wait_active(host, "burrow-producer.service", 120)
    reply = host.run(["curl", "-sS", "--fail", "--max-time", "60", "--unix-socket", SOCKET,
                      "--data-binary", f"hello {suite}", "http://burrow/v1/requests"])
    assert reply.stdout == f"Consumer processed: hello {suite}"

    package_files = [line for line in host.run(["dpkg", "-L", "burrow"]).stdout.splitlines()
                     if line.startswith(("/opt/venvs/burrow/", "/etc/burrow/", "/usr/bin/burrow"))]
    assert package_files, "dpkg -L listed none of the package's files"
    host.run(["apt-get", "purge", "-y", "burrow"], env=APT_ENV, timeout=300)
    left = host.run(["sh", "-c", 'for f in "$@"; do [ -e "$f" ] || [ -L "$f" ] && echo "$f"; done; true', "sh",
                     *package_files]).stdout.split()
    assert not left, f"purge left {left[:10]}"
    for folder in ("/opt/venvs/burrow", "/etc/burrow"):
        assert host.run(["test", "-e", folder], check=False).returncode != 0, f"purge left {folder}"
    for unit in DAEMONS:
        assert host.systemctl("is-active", unit, check=False).stdout.strip() in ("inactive", "unknown"), unit
    assert host.run(["pgrep", "-u", "burrow"], check=False).returncode == 1, "a burrow process is still running"
    status = host.run(["dpkg-query", "-W", "-f=${Status}", "burrow"], check=False)
    assert status.returncode != 0 or status.stdout.endswith("not-installed"), f"after purge: {status.stdout}"
