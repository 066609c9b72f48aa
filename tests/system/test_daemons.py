"""burrow-producer and burrow-consumer as real systemd services in a booted Debian container.

One container (own network namespace, so its RabbitMQ and ports never meet the host's) gets the
.deb, a native RabbitMQ with least-privilege users, the AMQP passwords as root-only credential
files, and a tiny test handler on PYTHONPATH. The tests then drive it the way an operator would,
through ``systemctl``, ``journalctl``, ``curl --unix-socket`` and ``burrow send``, in file order:
readiness only after the broker is up, STATUS text, structured journald fields, SIGHUP reload,
restarts under load without a failed request, 503 during a broker outage, socket activation, the
watchdog, the credential and the ``systemd-analyze security`` scores.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from collections.abc import Callable
from pathlib import Path

import pytest

from .daemonhost import SOCKET, add_broker_users, curl_request, set_option, show, wait_active
from .nspawn import Host, Network, ensure_root, require_root_and_tools, wait_until

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

VENV_PYTHON = "/opt/venvs/burrow/bin/python"
UNITS = ("burrow-consumer.service", "burrow-producer.service")
#: The handler the consumer runs in these tests: echoes, fails on request, or is slow on request.
TEST_HANDLER = '''\
"""Test handler for the system tests: "fail..." raises, "slow..." takes 50 ms, anything else echoes."""
import time


def handle(body: bytes) -> bytes:
    if body.startswith(b"fail"):
        raise ValueError("asked to fail")
    if body.startswith(b"slow"):
        time.sleep(0.05)
    return b"ok:" + body
'''
CONSUMER_DROPIN = """\
[Service]
# The system tests' handler lives outside the package.
Environment=PYTHONPATH=/usr/local/lib/burrow-test
"""
WATCHDOG_DROPIN = """\
[Service]
# SIGUSR1 hangs the AMQP I/O loop; a short watchdog notices within seconds.
Environment=BURROW_TEST_HOOKS=1
WatchdogSec=4
"""
#: Runs in the box with the package's Python: COUNT requests "slow-<n>" (each body once) from 8
#: threads through the package's own burst runner and socket client; a reply that is not exactly
#: the handler's answer to that body counts as failed ("WrongReply"). Prints the counts as JSON.
CHECKED_BURST = r"""
import json, sys
from burrow.tools.burst import run_burst
from burrow.tools.sendclient import SocketClient

class WrongReply(Exception):
    pass

count = int(sys.argv[1])
client = SocketClient(sys.argv[2], timeout=60)

def send(body):
    reply = client.send(body)
    if reply != b"ok:" + body:
        raise WrongReply(f"{body!r} got {reply[:60]!r}")
    return reply

result = run_burst(send, [f"slow-{n}".encode() for n in range(count)], count=count, concurrency=8, show_progress=False)
print(json.dumps({"requested": result.requested, "sent": result.sent, "failed": result.failed, "errors": dict(result.errors)}))
"""
START_TIMEOUT_DROPIN = """\
[Service]
# The unit's 90 s start timeout, shortened so that the test sees the same behaviour in 15 s.
TimeoutStartSec=15
"""
CONFIG_ERROR_DROPIN = """\
[Service]
# Stands in for a daemon that refuses its configuration: exits 78 (EX_CONFIG) at once, or with the
# status named in /run/burrow-test-status.
ExecStart=
ExecStart=/bin/sh -c 'exit $$(cat /run/burrow-test-status)'
Type=simple
"""
#: The highest ``systemd-analyze security`` exposure a burrow unit may have (the README says 0.9).
MAX_EXPOSURE = 0.9
#: The daemons' STATUS= line: the producer names its reply queue's type, the consumer its services.
STATUS_LINE = re.compile(r"^processed \d+, (failed \d+, )?in flight \d+, \d+ req/s, broker \S+ connected"
                         r"(, (classic|quorum) reply queue|; services: default \d+ ready \d+ consumers?)$")


def restart(host: Host, unit: str, *extra: str) -> None:
    """``systemctl restart``, clearing the start-rate counter first (tests restart a lot)."""
    host.systemctl("reset-failed", unit, check=False)
    host.systemctl("restart", *extra, unit)


def burrow_send(host: Host, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return host.run([VENV_PYTHON, "-m", "burrow.tools.sendclient", "--socket", SOCKET, *args], check=False, timeout=timeout)


def set_consumer_option(host: Host, key: str, value: str) -> None:
    set_option(host, "consumer", key, value)


def producer_connected(host: Host) -> bool:
    health = host.run(["curl", "-sS", "--unix-socket", SOCKET, "http://burrow/v1/health"]).stdout
    return json.loads(health)["broker_connected"] is True


@pytest.fixture(scope="module")
def box(suite: str, deb_for: Callable[[str], Path]) -> Iterator[Host]:
    """The container with RabbitMQ, the package, broker users, credentials and the test handler,
    on each Debian release (``suite``)."""
    require_root_and_tools()
    root = ensure_root(["rabbitmq-server"], suite)
    with Network() as network, Host("daemons", root, network=network, boot_timeout=90) as host:
        host.copy_in(deb_for(suite), "/root/burrow.deb")
        host.run(["dpkg", "-i", "/root/burrow.deb"])
        wait_active(host, "rabbitmq-server.service", 120)
        add_broker_users(host)
        host.write_file("/usr/local/lib/burrow-test/burrowtest.py", TEST_HANDLER)
        host.write_file("/etc/systemd/system/burrow-consumer.service.d/10-test-handler.conf", CONSUMER_DROPIN)
        set_consumer_option(host, "handler", '"burrowtest:handle"')
        set_consumer_option(host, "concurrency", "4")
        for role in ("consumer", "producer"):
            # Back off at most 5 s between reconnects (default 30 s), so outages end quickly here.
            set_option(host, role, "reconnect_max_delay", "5.0")
        host.systemctl("daemon-reload")
        host.systemctl("start", "burrow-producer.socket")
        for unit in UNITS:
            restart(host, unit)
        yield host


def test_units_are_hardened(box: Host) -> None:
    """``systemd-analyze security`` of the installed units (and a template instance) <= 0.9.

    The same files are scored offline, straight from the repository, in test_static_checks.py.
    """
    box.run(["cp", "/etc/burrow/consumer.toml", "/etc/burrow/consumer-extra.toml"])
    scores = {}
    try:
        for unit in (*UNITS, "burrow-consumer@extra.service"):
            output = box.run(["systemd-analyze", "security", "--no-pager", unit]).stdout
            match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", output)
            assert match, output
            scores[unit] = float(match.group(1))
    finally:
        # Later tests (burrow status) see every /etc/burrow/consumer*.toml: leave none behind.
        box.run(["rm", "-f", "/etc/burrow/consumer-extra.toml"])
    logger.info("security scores: %s", scores)
    assert all(score <= MAX_EXPOSURE for score in scores.values()), scores


#: Per release: the broker the daemons meet, and whether their stale quorum leader workaround
#: (rabbitmq-server PR 9241, needed before 3.13) is armed for it.
BROKER_BY_RELEASE = {"trixie": ("RabbitMQ 4.0.", "off"), "bookworm": ("RabbitMQ 3.10.", "on")}


def test_the_daemons_name_their_broker_and_arm_the_workaround_for_3_10_only(box: Host, suite: str) -> None:
    broker, workaround = BROKER_BY_RELEASE[suite]
    for unit in UNITS:
        journal = box.journal(unit)
        assert f"({broker}" in journal and f"stale quorum leader workaround {workaround})" in journal, journal[-3000:]


def test_ready_only_after_the_broker_is_up(box: Host) -> None:
    box.systemctl("stop", "burrow-consumer.service")
    box.systemctl("stop", "rabbitmq-server.service")
    restarts_before = int(show(box, "burrow-consumer.service", "NRestarts"))
    box.systemctl("reset-failed", "burrow-consumer.service", check=False)
    box.systemctl("start", "--no-block", "burrow-consumer.service")
    wait_until(
        lambda: "waiting for broker" in show(box, "burrow-consumer.service", "StatusText"), 20, "the waiting STATUS"
    )
    # Without a broker the unit must stay "activating" (no READY=1) and must not crash or restart.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert show(box, "burrow-consumer.service", "ActiveState") == "activating"
        time.sleep(0.5)
    box.systemctl("start", "rabbitmq-server.service")
    wait_active(box, "burrow-consumer.service", 120)
    assert int(show(box, "burrow-consumer.service", "NRestarts")) == restarts_before
    journal = box.journal("burrow-consumer.service")
    assert "burrow-consumer ready" in journal
    # The producer was up all along; it reconnects by itself within its backoff.
    assert show(box, "burrow-producer.service", "ActiveState") == "active"
    wait_until(lambda: producer_connected(box), 60, "the producer to reconnect")


def test_manual_start_returns_at_the_start_timeout_while_the_broker_is_down(box: Host) -> None:
    """``systemctl start`` fails after TimeoutStartSec; the daemon restarts and waits for the broker."""
    unit = "burrow-consumer.service"
    dropin = f"/etc/systemd/system/{unit}.d/20-start-timeout-test.conf"
    box.systemctl("stop", unit)
    box.systemctl("stop", "rabbitmq-server.service")
    box.write_file(dropin, START_TIMEOUT_DROPIN)
    try:
        box.systemctl("daemon-reload")
        box.systemctl("reset-failed", unit, check=False)
        restarts = int(show(box, unit, "NRestarts"))
        started = time.monotonic()
        result = box.run(["systemctl", "start", unit], check=False, timeout=90)
        took = time.monotonic() - started
        logger.info("systemctl start returned %s after %.1f s: %s", result.returncode, took, result.stderr.strip())
        assert result.returncode != 0 and "timeout" in result.stderr, result.stderr
        assert 15 <= took < 45, f"systemctl start returned after {took:.1f} s"
        # Restart=on-failure starts it again: it keeps waiting for the broker, without READY.
        wait_until(lambda: int(show(box, unit, "NRestarts")) > restarts, 30, "the restart after the timeout")
        wait_until(lambda: "waiting for broker" in show(box, unit, "StatusText"), 20, "the waiting STATUS")
        assert show(box, unit, "ActiveState") == "activating"
        box.systemctl("start", "rabbitmq-server.service")
        wait_active(box, unit, 120)
    finally:
        box.systemctl("start", "rabbitmq-server.service")
        box.run(["rm", "-f", dropin])
        box.systemctl("daemon-reload")
    restart(box, unit)
    wait_active(box, unit)
    wait_until(lambda: producer_connected(box), 60, "the producer to reconnect")


def test_exit_status_78_is_not_restarted_but_other_failures_are(box: Host) -> None:
    """RestartPreventExitStatus=78: a configuration error leaves the unit failed, without a loop.

    The unit as shipped, with its ExecStart replaced by one that exits with a chosen status: this
    checks the unit's restart policy; which status the daemons exit with is the CLI's tests' part.
    """
    unit = "burrow-consumer@exitcode.service"
    dropin = f"/etc/systemd/system/{unit}.d/20-exit-status-test.conf"
    box.write_file(dropin, CONFIG_ERROR_DROPIN)
    try:
        box.systemctl("daemon-reload")
        box.write_file("/run/burrow-test-status", "78\n")
        box.systemctl("start", unit, check=False)
        wait_until(lambda: show(box, unit, "ActiveState") == "failed", 30, f"{unit} to fail")
        assert show(box, unit, "ExecMainStatus") == "78"
        # RestartSec=2: a restart would have happened by now.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert show(box, unit, "NRestarts") == "0" and show(box, unit, "ActiveState") == "failed"
            time.sleep(0.5)
        box.write_file("/run/burrow-test-status", "1\n")
        box.systemctl("reset-failed", unit)
        box.systemctl("start", unit, check=False)
        wait_until(lambda: int(show(box, unit, "NRestarts")) >= 1, 30, "a restart after exit status 1")
    finally:
        box.systemctl("stop", unit, check=False)
        box.systemctl("reset-failed", unit, check=False)
        box.run(["rm", "-rf", f"/etc/systemd/system/{unit}.d", "/run/burrow-test-status"])
        box.systemctl("daemon-reload")


def test_request_and_status_text(box: Host) -> None:
    status, headers, body = curl_request(box, "hello")
    assert (status, body) == (200, "ok:hello")
    assert re.fullmatch(r"[0-9A-Za-z._:-]+", headers["x-burrow-correlation-id"])
    assert headers["x-burrow-request-id"]
    health = json.loads(box.run(["curl", "-sS", "--unix-socket", SOCKET, "http://burrow/v1/health"]).stdout)
    assert health["broker_connected"] is True
    for unit in UNITS:

        def status_line(unit: str = unit) -> bool:
            return bool(STATUS_LINE.match(show(box, unit, "StatusText")))

        wait_until(status_line, 15, f"{unit} STATUS line")
    assert "Status:" in box.systemctl("status", "--no-pager", "burrow-consumer.service").stdout


def test_structured_journal_fields_find_one_request(box: Host) -> None:
    status, headers, body = curl_request(box, "fail please")
    assert status == 502 and json.loads(body)["type"] == "ValueError"
    correlation_id = headers["x-burrow-correlation-id"]

    def entries() -> list[dict[str, object]]:
        return box.journal_json(None, f"CORRELATION_ID={correlation_id}")

    wait_until(lambda: len({e.get("_SYSTEMD_UNIT") for e in entries()}) >= 2, 15, "both daemons' journal entries")
    by_unit = {entry["_SYSTEMD_UNIT"]: entry for entry in entries()}
    consumer = by_unit["burrow-consumer.service"]
    assert consumer["SYSLOG_IDENTIFIER"] == "burrow-consumer"
    assert consumer["HANDLER"] == "burrowtest:handle"
    assert consumer["PRIORITY"] == "4"
    # The handler-error warning comes from the consumer's worker pool (burrow/workers.py).
    assert str(consumer["CODE_FILE"]).endswith("/burrow/workers.py")
    assert consumer["CODE_FUNC"] and consumer["CODE_LINE"] and consumer["LOGGER"] == "burrow.workers"
    producer = by_unit["burrow-producer.service"]
    assert producer["REQUEST_ID"] == headers["x-burrow-request-id"]
    assert producer["SYSLOG_IDENTIFIER"] == "burrow-producer"
    # journalctl's own filter by unit and field, as the README tells operators to use it.
    text = box.run(["journalctl", "--no-pager", "-u", "burrow-consumer", f"CORRELATION_ID={correlation_id}"]).stdout
    assert "asked to fail" in text


def test_reload_applies_concurrency_and_refuses_a_bad_file(box: Host) -> None:
    unit = "burrow-consumer.service"
    pid = show(box, unit, "MainPID")
    set_consumer_option(box, "concurrency", "6")
    box.systemctl("reload", unit)
    wait_until(lambda: "Service default concurrency is now 6" in box.journal(unit), 15, "the new concurrency")
    assert show(box, unit, "ActiveState") == "active"
    good = box.run("cat /etc/burrow/consumer.toml").stdout
    box.write_file("/etc/burrow/consumer.toml", good + "\nnot_a_key = 1\n", 0o640, "root:burrow")
    try:
        box.systemctl("reload", unit)
        wait_until(lambda: "Reload refused" in box.journal(unit), 15, "the refusal in the journal")
        assert show(box, unit, "ActiveState") == "active"
        assert show(box, unit, "MainPID") == pid
        assert curl_request(box, "still here")[2] == "ok:still here"
    finally:
        box.write_file("/etc/burrow/consumer.toml", good, 0o640, "root:burrow")


def test_restarts_under_load_lose_no_request(box: Host) -> None:
    """``systemctl restart`` of the consumer, then of the producer, during a steady burst."""
    result: list[subprocess.CompletedProcess[str]] = []
    sender = threading.Thread(
        target=lambda: result.append(
            box.run([VENV_PYTHON, "-c", CHECKED_BURST, "1200", SOCKET], check=False, timeout=180)
        )
    )
    processed_before = _consumer_processed(box)
    sender.start()
    wait_until(lambda: _consumer_processed(box) >= processed_before + 50, 30, "the burst to get going")
    restart(box, "burrow-consumer.service")
    assert sender.is_alive(), "the burst ended before the consumer restart: make it longer"
    wait_active(box, "burrow-consumer.service")
    restart(box, "burrow-producer.service")
    assert sender.is_alive(), "the burst ended before the producer restart: make it longer"
    sender.join(200)
    assert result, "burrow send did not finish"
    completed = result[0]
    logger.info("burst under restarts: %s", completed.stdout.strip())
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # Every request answered, each with the handler's reply to its own body.
    assert json.loads(completed.stdout) == {"requested": 1200, "sent": 1200, "failed": 0, "errors": {}}, completed.stdout


def _consumer_processed(box: Host) -> int:
    match = re.match(r"processed (\d+)", show(box, "burrow-consumer.service", "StatusText"))
    return int(match.group(1)) if match else 0


def test_broker_outage_answers_503_then_recovers(box: Host) -> None:
    """While RabbitMQ is down the API says 503 (once producer.unavailable_wait, 5 s, has passed);
    nothing restarts; it recovers by itself."""
    restarts = {unit: show(box, unit, "NRestarts") for unit in UNITS}
    box.systemctl("stop", "rabbitmq-server.service")
    try:

        wait_until(lambda: not producer_connected(box), 30, "the producer to notice the outage")
        status, headers, body = curl_request(box, "during the outage")
        assert status == 503 and json.loads(body)["error"] == "unavailable"
        assert headers["retry-after"] == "1"
        wait_until(
            lambda: "waiting for broker" in show(box, "burrow-consumer.service", "StatusText"), 15, "the STATUS"
        )
    finally:
        box.systemctl("start", "rabbitmq-server.service")
    wait_until(lambda: producer_connected(box), 60, "the producer to reconnect")
    wait_until(lambda: "waiting" not in show(box, "burrow-consumer.service", "StatusText"), 60, "the consumer")
    assert curl_request(box, "after")[2] == "ok:after"
    assert {unit: show(box, unit, "NRestarts") for unit in UNITS} == restarts
    assert all(show(box, unit, "ActiveState") == "active" for unit in UNITS)


def test_socket_activation_starts_the_producer_on_demand(box: Host) -> None:
    box.systemctl("stop", "burrow-producer.service")
    assert show(box, "burrow-producer.socket", "ActiveState") == "active"
    assert box.run(["stat", "-c", "%a %U %G", SOCKET]).stdout.split() == ["660", "burrow", "burrow"]
    # The connection itself starts the service; curl waits in the socket's queue until it answers.
    status, _, body = curl_request(box, "wake up")
    assert (status, body) == (200, "ok:wake up")
    assert show(box, "burrow-producer.service", "ActiveState") == "active"
    assert "socket activation" in box.journal("burrow-producer.service")


def test_hung_io_loop_is_killed_by_the_watchdog(box: Host) -> None:
    unit = "burrow-consumer.service"
    box.write_file(f"/etc/systemd/system/{unit}.d/20-watchdog-test.conf", WATCHDOG_DROPIN)
    try:
        box.systemctl("daemon-reload")
        restart(box, unit)
        wait_active(box, unit)
        assert show(box, unit, "WatchdogUSec") == "4s"
        restarts = int(show(box, unit, "NRestarts"))
        old_pid = show(box, unit, "MainPID")
        box.systemctl("kill", "--kill-who=main", "--signal=SIGUSR1", unit)
        wait_until(lambda: int(show(box, unit, "NRestarts")) > restarts, 30, "the watchdog restart")
        wait_active(box, unit)
        assert show(box, unit, "MainPID") != old_pid
        assert "Watchdog timeout" in box.journal(unit)
    finally:
        box.run(["rm", "-f", f"/etc/systemd/system/{unit}.d/20-watchdog-test.conf"])
        box.systemctl("daemon-reload")
        restart(box, unit)
        wait_active(box, unit)


def test_password_is_readable_only_through_the_credential(box: Host) -> None:
    for role in ("consumer", "producer"):
        path = f"/etc/burrow/credentials/{role}-amqp-password"
        assert box.run(["stat", "-c", "%a %U", path]).stdout.split() == ["600", "root"]
        denied = box.run(["runuser", "-u", "burrow", "--", "cat", path], check=False)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        password = box.run(["cat", path]).stdout.strip()
        unit = f"burrow-{role}.service"
        pid = show(box, unit, "MainPID")
        assert box.run(["ps", "-o", "user=", "-p", pid]).stdout.strip() == "burrow"
        assert password not in box.run(["cat", f"/proc/{pid}/cmdline"]).stdout
        environ = box.run(["cat", f"/proc/{pid}/environ"]).stdout
        assert password not in environ and "CREDENTIALS_DIRECTORY=" in environ
        leaks = [
            {key: entry.get(key) for key in ("_SYSTEMD_UNIT", "SYSLOG_IDENTIFIER", "_COMM", "MESSAGE")}
            for entry in box.journal_json()
            if password in json.dumps(entry)
        ]
        assert not leaks, leaks
        assert f"LoadCredential=amqp-password:{path}" in box.systemctl("cat", unit).stdout
        # The copy systemd hands the service: read-only, for its user only, gone when it stops.
        # systemd 252 (Debian 12) makes it 0400 burrow; 257 (Debian 13) 0440 root with the
        # service's user let in by an ACL: what counts is who can read and that nobody writes.
        credential = f"/run/credentials/{unit}/amqp-password"
        mode = int(box.run(["stat", "-c", "%a", credential]).stdout, 8)
        assert not mode & 0o222 and not mode & 0o007, f"{credential} is {mode:o}"
        assert box.run(["runuser", "-u", "burrow", "--", "cat", credential]).stdout.strip() == password
        assert box.run(["runuser", "-u", "nobody", "--", "cat", credential], check=False).returncode != 0


def test_operator_commands_on_the_installed_files(box: Host) -> None:
    """``burrow check-config`` on the conffiles as installed, where the secret is absent; with
    ``--secrets`` under the unit's credential; ``burrow status`` on a host whose consumer has no
    metrics endpoint (the package default) reads the consumer's STATUS= line from systemd."""
    for role in ("consumer", "producer"):
        path = f"/etc/burrow/{role}.toml"
        checked = box.run(["burrow", "check-config", "--role", role, path], check=False,
                          env={"PYTHONPATH": "/usr/local/lib/burrow-test"})  # the test handler's folder
        assert checked.returncode == 0, checked.stderr
        assert ("not checked: CREDENTIALS_DIRECTORY not set here (systemd sets it from the unit's LoadCredential=)"
                in checked.stdout), checked.stdout
        credential = f"amqp-password:/etc/burrow/credentials/{role}-amqp-password"
        with_secret = box.run(["systemd-run", "--quiet", "--pipe", "--wait", "--collect",
                               f"--property=LoadCredential={credential}",
                               "--setenv=PYTHONPATH=/usr/local/lib/burrow-test",
                               "/usr/bin/burrow", "check-config", "--secrets", "--role", role, path], check=False)
        assert with_secret.returncode == 0, with_secret
        assert "/amqp-password (rabbitmq.password_file): OK" in with_secret.stdout, with_secret.stdout
    wait_until(lambda: box.run(["burrow", "status", "producer"], check=False).returncode == 0, 60, "producer up")
    wait_until(lambda: "services: " in box.run(["burrow", "status", "consumer"], check=False).stdout, 60,
               "the consumer's services in its STATUS= line")
    status = box.run(["burrow", "status"], check=False)
    assert status.returncode == 0, status
    producer_line, consumer_line = status.stdout.splitlines()
    assert producer_line.startswith(f"producer  {SOCKET}") and " up: broker connected, " in producer_line
    assert consumer_line.startswith("consumer  /etc/burrow/consumer.toml") and " up: burrow-consumer.service: " in consumer_line
    assert re.search(r"services: default \d+ ready [1-9]\d* consumers?$", consumer_line), consumer_line
