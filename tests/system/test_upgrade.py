"""Package upgrade under load, removal and purge, in a booted Debian container with its own RabbitMQ.

Version N and N+1 are two packages of this tree: N+1 is the one every system test uses (its version
derived from git by scripts/build-deb.sh), N the same tree packaged with ``--version <N+1>~prev``,
which dpkg orders just below it (build-deb.sh repacks N+1's files with that version: seconds, not a
second build). The test installs N (units stay disabled and stopped), enables the
producer, the consumer and a second consumer instance, and then installs N+1 with ``apt-get
install`` while a client in the container sends numbered requests through the producer's socket,
one connection each, and records every answer by request id. Every request must be answered with its
own reply, the services must run the new version (new processes, started by the upgrade), and the
socket unit must not have been restarted. ``apt-get remove`` must stop every unit, and ``apt-get
purge`` remove what the package, the README and the Ansible roles put in /etc.
"""

from __future__ import annotations

import filecmp
import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .callers import Callers
from .conftest import BUILD_DEB_SCRIPT
from .daemonhost import add_broker_users, apt, broker_box, deb_version, set_option, show, wait_active
from .nspawn import RELEASES, REPO, Host, wait_until

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

SERVICES = ("burrow-consumer.service", "burrow-consumer@2.service", "burrow-producer.service")
SOCKET_UNIT = "burrow-producer.socket"
LOAD_STOP = "/run/burrow-load-stop"
#: Bounds of the load (tests/system/callers.py): requests in all, seconds, client threads, and each
#: request's X-Burrow-Timeout.
LOAD_MAX_REQUESTS = 60000
LOAD_MAX_SECONDS = 420
LOAD_WORKERS = 6
LOAD_TIMEOUT = 60
#: The files the Ansible roles write besides the package's (see ansible/roles/burrow_*/tasks).
ROLE_DROPINS = tuple(
    f"/etc/systemd/system/{unit}.d/50-broker-firewall.conf"
    for unit in ("burrow-consumer.service", "burrow-consumer@.service", "burrow-producer.service")
)
OPERATOR_DROPIN = "/etc/systemd/system/burrow-producer.service.d/override.conf"


@pytest.fixture(scope="module")
def burrow_deb(suite: str, deb_for: Callable[[str], Path]) -> Path:
    """Version N+1: the package of the release the module's host runs, as every system test uses it."""
    return deb_for(suite)


@pytest.fixture(scope="module")
def older_deb(suite: str, burrow_deb: Path) -> Path:
    """Version N: this tree packaged again with a version dpkg orders just below the fixture's."""
    older = f"{deb_version(burrow_deb)}~prev"
    started = time.monotonic()
    result = subprocess.run(
        [str(BUILD_DEB_SCRIPT), "--dist", suite, "--version", older], check=True, stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    deb = REPO / result.stdout.strip().splitlines()[-1]
    logger.info("older package %s ready in %.1f s", deb.name, time.monotonic() - started)
    assert deb_version(deb) == older
    return deb


@pytest.fixture(scope="module")
def host(suite: str) -> Iterator[Host]:
    """A booted container of each Debian release with RabbitMQ running, on a network of its own."""
    with broker_box("upgrade", suite) as booted:
        yield booted


def test_latest_link_names_the_derived_build_not_the_older_one(suite: str, burrow_deb: Path, older_deb: Path) -> None:
    latest = REPO / "dist" / f"burrow_latest_deb{RELEASES[suite][0]}.deb"
    # burrow_deb is the session's copy of the build: same name, same bytes.
    assert latest.resolve().name == burrow_deb.name != older_deb.name
    assert filecmp.cmp(latest, burrow_deb, shallow=False)
    ordered = subprocess.run(["dpkg", "--compare-versions", deb_version(burrow_deb), "gt", deb_version(older_deb)])
    assert ordered.returncode == 0


def test_first_install_leaves_every_unit_disabled_and_stopped(host: Host, older_deb: Path) -> None:
    host.copy_in(older_deb, "/tmp/burrow-old.deb")
    apt(host, "install", "/tmp/burrow-old.deb")
    for unit in ("burrow-consumer.service", "burrow-producer.service", SOCKET_UNIT):
        assert host.systemctl("is-enabled", unit, check=False).stdout.strip() == "disabled", unit
        assert host.systemctl("is-active", unit, check=False).stdout.strip() == "inactive", unit
    readme = host.run(["head", "-1", "/usr/share/doc/burrow/README.md"]).stdout
    assert readme.startswith("# burrow"), "Documentation= names the README, so it must be there"


def test_upgrade_under_load_restarts_every_running_daemon_without_a_failed_request(
    host: Host, older_deb: Path, burrow_deb: Path
) -> None:
    add_broker_users(host)
    host.run(["install", "-m", "0640", "-o", "root", "-g", "burrow",
              "/etc/burrow/consumer.toml", "/etc/burrow/consumer-2.toml"])
    for role in ("consumer", "producer"):
        # Back off at most 5 s between reconnects (default 30 s).
        set_option(host, role, "reconnect_max_delay", "5.0")
    # Consumers first: they declare the request queue, which the producer's broker user may only use.
    host.systemctl("enable", "--now", "burrow-consumer.service", "burrow-consumer@2.service")
    host.systemctl("enable", "--now", "burrow-producer.service")
    assert host.systemctl("is-enabled", SOCKET_UNIT).stdout.strip() == "enabled", "Also= in [Install]"
    for unit in (*SERVICES, SOCKET_UNIT):
        wait_active(host, unit, 120)
    before = {unit: show(host, unit, "MainPID") for unit in SERVICES}
    socket_since = show(host, SOCKET_UNIT, "ActiveEnterTimestampMonotonic")

    load = Callers(host, "upgrade", LOAD_MAX_REQUESTS, LOAD_WORKERS, seconds=LOAD_MAX_SECONDS, timeout=LOAD_TIMEOUT,
                   stop_path=LOAD_STOP)
    try:
        wait_until(lambda: len(load.records()) >= 300, 120, "the load to get going")
        host.copy_in(burrow_deb, "/tmp/burrow-new.deb")
        upgrade_start = time.time()
        # The container shares the host's CLOCK_MONOTONIC, in which systemd stamps each start.
        upgrade_start_usec = time.monotonic_ns() // 1000
        upgrade = apt(host, "install", "/tmp/burrow-new.deb")
        upgrade_end = time.time()
        assert load.thread.is_alive(), "the load ended before the upgrade did: raise its bounds"
        served_at_upgrade_end = len(load.records())
        # Keep the load on until the upgraded daemons have answered a good number more.
        wait_until(lambda: len(load.records()) >= served_at_upgrade_end + 300, 120, "requests after the upgrade")
    finally:
        host.run(["touch", LOAD_STOP])
        load.thread.join(load.limit + 30)
    records = load.finish()
    logger.info("apt-get install output:\n%s", upgrade.stdout[-2000:])

    assert host.run(["dpkg-query", "-W", "-f=${Version}", "burrow"]).stdout == deb_version(burrow_deb)
    for unit in SERVICES:
        assert show(host, unit, "ActiveState") == "active", unit
        assert show(host, unit, "MainPID") != before[unit], f"{unit} was not restarted"
        started_usec = int(show(host, unit, "ExecMainStartTimestampMonotonic"))
        assert started_usec > upgrade_start_usec, f"{unit} was started before the upgrade"
    # The socket stayed up the whole time: clients queued in it while the producer restarted.
    assert show(host, SOCKET_UNIT, "ActiveState") == "active"
    assert show(host, SOCKET_UNIT, "ActiveEnterTimestampMonotonic") == socket_since

    ids = [str(record["id"]) for record in records]
    failed = [r for r in records if r["status"] != 200 or r["body"] != f"Consumer processed: {r['id']}"]
    during = [r for r in records if float(r["end"]) >= upgrade_start and float(r["start"]) <= upgrade_end]
    slowest = max(float(r["end"]) - float(r["start"]) for r in during) if during else 0.0
    logger.info(
        "upgrade took %.1f s; requests sent %d, answered %d, failed %d; %d overlapped the upgrade, slowest %.2f s",
        upgrade_end - upgrade_start,
        len(records),
        len(records) - len(failed),
        len(failed),
        len(during),
        slowest,
    )
    assert len(set(ids)) == len(ids) == len(records), "a request id was recorded twice"
    assert sorted(int(i.removeprefix("upgrade-")) for i in ids) == list(range(len(ids))), "a request went missing"
    assert not failed, failed[:5]
    assert len(during) >= 50, f"only {len(during)} requests overlapped the upgrade: the check proves little"


def test_remove_stops_every_unit(host: Host) -> None:
    apt(host, "remove", "burrow")
    for unit in (*SERVICES, SOCKET_UNIT):
        assert host.systemctl("is-active", unit, check=False).stdout.strip() in ("inactive", "unknown"), unit
    assert host.run(["pgrep", "-u", "burrow"], check=False).returncode == 1, "a burrow process is still running"
    # What purge removes is still there after remove.
    assert host.run(["test", "-e", "/etc/burrow/credentials/consumer-amqp-password"], check=False).returncode == 0


def test_purge_removes_the_secrets_and_the_files_the_roles_wrote(host: Host) -> None:
    for dropin in ROLE_DROPINS:
        host.write_file(dropin, "[Service]\nIPAddressAllow=192.0.2.10\n")
    host.write_file(OPERATOR_DROPIN, "[Service]\nEnvironment=KEPT=1\n")
    wants = host.run("ls /etc/systemd/system/*.wants/ | grep -E '^burrow-(consumer|producer)'").stdout.split()
    assert sorted(wants) == sorted(["burrow-consumer.service", "burrow-consumer@2.service",
                                    "burrow-producer.service", "burrow-producer.socket"])
    apt(host, "purge", "burrow")
    gone = [
        "/etc/burrow",
        "/etc/burrow/credentials/consumer-amqp-password",
        "/etc/burrow/credentials/producer-amqp-password",
        "/etc/burrow/consumer-2.toml",
        "/etc/systemd/system/burrow-consumer.service.d",
        "/etc/systemd/system/burrow-consumer@.service.d",
        *ROLE_DROPINS,
    ]
    left = [path for path in gone if host.run(["test", "-e", path], check=False).returncode == 0]
    assert not left, f"purge left {left}"
    assert host.run("ls /etc/systemd/system/*.wants/ | grep -E '^burrow-(consumer|producer)'", check=False).stdout == ""
    assert host.run(["cat", OPERATOR_DROPIN]).stdout.endswith("KEPT=1\n"), "an operator's drop-in must stay"
    assert host.run(["getent", "passwd", "burrow"]).returncode == 0, "the user stays (Debian policy)"
