"""Upgrade from the previous release, with requests queued: every one answered, counted per id.

The previous release is revision :data:`PREVIOUS_RELEASE`, the last landing before named services
(issue 22), built from git by scripts/build-previous-deb.sh (cached by revision). It predates
Debian 13 support, so this runs on Debian 12 only. In a booted container with its own RabbitMQ the
test installs that package, gives the daemons that release's broker permissions, and configures
them as an operator would: the consumer's ``[consumer] handler`` names the operator's own handler
(:data:`HANDLER`, on PYTHONPATH through a drop-in), the producer's file loses its ``[topology]``
table (the previous release's Ansible role wrote none, so the reply queue is of each release's
default type), and both get a shorter reconnect backoff: both conffiles are changed on the host.
Then, with the consumer stopped, :data:`QUEUED` callers send a request each through the
producer's socket and wait: the requests queue in ``burrow.requests``. The consumer comes back and
takes its window of them, whose handlers wait on a gate file (requests being worked on); a second
client keeps sending requests through the producer.

This tree's package is then installed over it with ``apt-get install``, keeping the changed
configuration files (``--force-confold``, what an unattended upgrade does). Its postinst restarts
the consumer first: as soon as the old consumer is stopping, the gate opens, so the old consumer
finishes what it is running and gives back what it had not started. The new consumer (the default
service, on ``burrow.requests``, from the old ``[consumer] handler``) takes the rest; then the
producer restarts, the old one answering what it still had, the new one the callers that waited in
the socket's queue meanwhile.

Counted per request id from the callers' side: every request is answered 200 with its own reply
(0 lost); the handler's journal lines count every run of each request, and a request that ran twice
ran the second time as a redelivery. The configuration files are those of before, byte for byte,
and this tree's ``burrow check-config`` accepts them; no declaration was refused (PRECONDITION_FAILED
in neither daemon's journal nor the broker's log).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from .callers import Callers
from .daemonhost import add_broker_users, apt, broker_box, deb_version, set_option, show, wait_active
from .nspawn import REPO, HarnessError, Host, wait_until

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

SUITE = "bookworm"
#: The previous release: the last landing before named services (issue 22).
PREVIOUS_RELEASE = "3325da6d9ffa474cf99fd6429389eb543281f0af"
#: Its Python dependencies as pip resolved them on its commit date (2026-11-29).
PREVIOUS_RELEASE_PINS = (
    "click==8.5.1", "h11==0.16.0", "httptools==0.9.0", "lockfile==0.12.2", "pika==1.4.4",
    "prometheus-client==0.26.0", "python-daemon==3.1.2", "sdnotify==0.3.2", "uvicorn==0.55.0",
    "uvloop==0.23.0",
)
BUILD_PREVIOUS_SCRIPT = REPO / "scripts" / "build-previous-deb.sh"
#: Upgrades keep configuration files the operator changed, as an unattended upgrade does.
KEEP_CONFIG = ("-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold")
CONFIGS = ("/etc/burrow/consumer.toml", "/etc/burrow/producer.toml")
CONSUMER = "burrow-consumer.service"
PRODUCER = "burrow-producer.service"
#: Requests sent while the consumer is stopped, each by its own caller.
QUEUED = 200
GATE = "/run/burrow-upgrade-gate"
HANDLER_DIR = "/usr/local/lib/burrow-upgrade"
#: The operator's handler, the same module under both releases. "queued-*" requests wait for the
#: gate file (bounded), so the consumer holds them in flight; each run is logged to the journal.
HANDLER = f'''\
"""The upgrade test's handler: answers who ran the request; "queued-*" wait for {GATE}."""
import os
import time


def handle(body, context):
    if body.startswith(b"queued-"):
        deadline = time.monotonic() + 300
        while not os.path.exists("{GATE}") and time.monotonic() < deadline:
            time.sleep(0.05)
    answer = f"{{body.decode()}} pid={{os.getpid()}} redelivered={{int(context.redelivered)}}"
    print("upgradetest ran " + answer, flush=True)
    return answer.encode()
'''
HANDLER_DROPIN = f"""\
[Service]
# The operator's handler lives outside the package.
Environment=PYTHONPATH={HANDLER_DIR}
# Every run of the handler is counted from its journal lines: journald must not drop any.
LogRateLimitIntervalSec=0
"""
ANSWER = re.compile(r"^(?P<id>[a-z]+-\d+) pid=(?P<pid>\d+) redelivered=(?P<redelivered>[01])$")
#: Each caller's X-Burrow-Timeout: a request not answered by then counts as lost.
CALLER_TIMEOUT = 240
FLOW_WORKERS = 2
FLOW_MAX_REQUESTS = 20000
#: How long any caller sends at the most.
FLOW_SECONDS = 420
STOP_FLOW = "/run/burrow-flow-stop"


def previous_permissions() -> dict[str, tuple[str, str, str]]:
    """The (configure, write, read) regexes the previous release's roles granted each daemon's user."""
    text = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{PREVIOUS_RELEASE}:ansible/group_vars/brokers/burrow.yml"],
        check=True, capture_output=True, text=True,
    ).stdout
    granted = {}
    for role, user in zip(("producer", "consumer"), yaml.safe_load(text)["burrow_service_rabbitmq_users"], strict=True):
        (grant,) = user["permissions"]
        granted[f"burrow-{role}"] = (grant["configure_priv"], grant["write_priv"], grant["read_priv"])
    return granted


@pytest.fixture(scope="module")
def previous_deb() -> Path:
    """The previous release's package (built once per revision, then cached)."""
    started = time.monotonic()
    result = subprocess.run([str(BUILD_PREVIOUS_SCRIPT), PREVIOUS_RELEASE, *PREVIOUS_RELEASE_PINS],
                            check=True, stdout=subprocess.PIPE, text=True, cwd=REPO)
    deb = Path(result.stdout.strip().splitlines()[-1])
    logger.info("previous release %s ready in %.1f s", deb.name, time.monotonic() - started)
    return deb


@pytest.fixture(scope="module")
def new_deb(deb_for: Callable[[str], Path]) -> Path:
    return deb_for(SUITE)


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    with broker_box("upgrade-release", SUITE) as booted:
        yield booted


def calls(host: Host, prefix: str, count: int, workers: int) -> Callers:
    """``count`` requests ``<prefix>-<n>`` from ``workers`` callers, until :data:`STOP_FLOW` exists."""
    return Callers(host, prefix, count, workers, seconds=FLOW_SECONDS, timeout=CALLER_TIMEOUT, stop_path=STOP_FLOW)


def request_queue(host: Host) -> dict[str, int]:
    """``burrow.requests``' messages ready and unacknowledged."""
    rows = json.loads(host.run(["rabbitmqctl", "-q", "list_queues", "--formatter", "json", "name", "messages_ready",
                                "messages_unacknowledged"], timeout=60).stdout)
    (row,) = [row for row in rows if row["name"] == "burrow.requests"]
    return {"ready": int(row["messages_ready"]), "unacked": int(row["messages_unacknowledged"])}


def answer(record: dict[str, object]) -> re.Match[str] | None:
    """The handler's answer in a caller's record, when it is the answer to that record's request."""
    match = ANSWER.match(str(record["body"]))
    return match if match and match["id"] == record["id"] else None


def handler_runs(host: Host) -> dict[str, list[tuple[str, int]]]:
    """Each request id's runs of the handler, in order, as (consumer pid, redelivered flag)."""
    runs: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for line in host.journal(CONSUMER, output="cat").splitlines():
        if line.startswith("upgradetest ran "):
            match = ANSWER.match(line.removeprefix("upgradetest ran "))
            assert match, line
            runs[match["id"]].append((match["pid"], int(match["redelivered"])))
    return runs


def sha256(host: Host, path: str) -> str:
    return hashlib.sha256(host.run(["cat", path]).stdout.encode()).hexdigest()


def install_previous_release(host: Host, previous_deb: Path) -> None:
    """The previous release installed and configured as an operator would, consumer and producer up."""
    host.copy_in(previous_deb, "/root/burrow-previous.deb")
    apt(host, "install", "/root/burrow-previous.deb")
    assert host.run(["dpkg-query", "-W", "-f=${Version}", "burrow"]).stdout == deb_version(previous_deb)
    add_broker_users(host, previous_permissions())
    host.write_file(f"{HANDLER_DIR}/upgradetest.py", HANDLER)
    host.write_file(f"/etc/systemd/system/{CONSUMER}.d/10-handler.conf", HANDLER_DROPIN)
    host.systemctl("daemon-reload")
    set_option(host, "consumer", "handler", '"upgradetest:handle"')
    for role in ("consumer", "producer"):
        set_option(host, role, "reconnect_max_delay", "5.0")
    # The producer's topology as the previous release's Ansible role wrote it: none at all, so its
    # reply queue is of the release's default type (the shipped file spells out the old default).
    producer = host.run(["cat", CONFIGS[1]]).stdout
    without = re.sub(r"^\[topology\]\n(?:[^\[\n].*\n|\n)*", "", producer, count=1, flags=re.MULTILINE)
    assert "reply_queue_type" in producer and "reply_queue_type" not in without and "[producer]" in without
    host.write_file(CONFIGS[1], without, 0o640, "root:burrow")
    # Consumers first: they declare the request queue, which the producer's broker user may only use.
    host.systemctl("enable", "--now", CONSUMER)
    host.systemctl("enable", "--now", PRODUCER)
    for unit in (CONSUMER, PRODUCER):
        wait_active(host, unit, 120)


def test_this_tree_sorts_above_the_previous_release(previous_deb: Path, new_deb: Path) -> None:
    old, new = deb_version(previous_deb), deb_version(new_deb)
    assert old.endswith(f".{PREVIOUS_RELEASE[:7]}"), old
    assert subprocess.run(["dpkg", "--compare-versions", new, "gt", old]).returncode == 0, f"{new} <= {old}"


def test_requests_queued_under_the_previous_release_are_all_answered_after_the_upgrade(
    host: Host, previous_deb: Path, new_deb: Path
) -> None:
    install_previous_release(host, previous_deb)
    warm = calls(host, "warm", 20, 4).finish()
    first_consumer = show(host, CONSUMER, "MainPID")
    assert all(r["status"] == 200 and r["body"] == f"{r['id']} pid={first_consumer} redelivered=0" for r in warm), warm

    # 1. The consumer is stopped: every request queues in burrow.requests, each caller waiting.
    host.systemctl("stop", CONSUMER)
    queued = calls(host, "queued", QUEUED, QUEUED)
    wait_until(lambda: request_queue(host)["ready"] == QUEUED, 120, f"{QUEUED} requests queued")
    # 2. The consumer of the previous release comes back and takes its window; the handlers wait.
    host.systemctl("start", CONSUMER)
    wait_active(host, CONSUMER, 120)
    wait_until(lambda: request_queue(host)["unacked"] > 0, 60, "the old consumer to take requests")
    flow = calls(host, "flow", FLOW_MAX_REQUESTS, FLOW_WORKERS)
    before = {unit: show(host, unit, "MainPID") for unit in (CONSUMER, PRODUCER)}
    logger.info("before the upgrade, burrow.requests: %s", request_queue(host))
    configs = {path: sha256(host, path) for path in CONFIGS}

    # 3. The upgrade; the gate opens once postinst stops the old consumer.
    host.copy_in(new_deb, "/root/burrow-new.deb")
    started = time.monotonic()
    with ThreadPoolExecutor(1) as installer:
        upgrade = installer.submit(apt, host, *KEEP_CONFIG, "install", "/root/burrow-new.deb")
        try:
            wait_until(lambda: upgrade.done() or show(host, CONSUMER, "ActiveState") == "deactivating", 240,
                       "postinst to stop the old consumer")
        finally:
            host.run(["touch", GATE])  # also when the wait failed: no handler is left waiting
        said = upgrade.result(300).stdout  # apt-get's failure, with its output, if it failed
    logger.info("upgrade took %.1f s; apt-get said:\n%s", time.monotonic() - started, said[-1500:])
    answered_at_upgrade_end = len(flow.records())
    try:
        wait_until(lambda: len(flow.records()) >= answered_at_upgrade_end + 100, 120, "100 requests after the upgrade")
    except HarnessError as exc:
        logger.error("%s; counting what was answered", exc)  # the tally below says which ids
    host.run(["touch", STOP_FLOW])
    queued_records, flow_records = queued.finish(), flow.finish()

    # Counted per request id, from the callers' side and from the handler's runs.
    records = queued_records + flow_records
    lost = [r for r in records if r["status"] != 200 or answer(r) is None]
    runs = handler_runs(host)
    new_consumer = show(host, CONSUMER, "MainPID")
    answered_by = Counter("old" if m["pid"] == before[CONSUMER] else "new" if m["pid"] == new_consumer else m["pid"]
                          for r in queued_records if (m := answer(r)))
    by_old, by_new = answered_by.pop("old", 0), answered_by.pop("new", 0)
    again = {i: ran for i, ran in runs.items() if len(ran) > 1}
    unflagged = {i: ran for i, ran in again.items() if any(not redelivered for _pid, redelivered in ran[1:])}
    # The container shares the host's CLOCK_MONOTONIC, in which systemd stamps each start.
    producer_started = time.time() - (time.monotonic() - int(show(host, PRODUCER, "ExecMainStartTimestampMonotonic")) / 1e6)
    waited = [r for r in flow_records if float(r["start"]) < producer_started < float(r["end"])]
    logger.info(
        "queued %d, answered %d (by the old consumer %d, the new one %d, other %s); flow %d, answered %d (%d waited "
        "through the producer's restart); lost %d %s; handler runs with the redelivered flag %d; ids run twice %d",
        len(queued_records), sum(1 for r in queued_records if r not in lost), by_old, by_new, dict(answered_by),
        len(flow_records), sum(1 for r in flow_records if r not in lost), len(waited), len(lost),
        Counter(str(r["status"] or r["error"]) for r in lost), sum(f for ran in runs.values() for _p, f in ran), len(again),
    )
    logs = {unit: host.journal(unit) for unit in (CONSUMER, PRODUCER)}
    logs["rabbitmq"] = host.run("cat /var/log/rabbitmq/rabbit*.log").stdout
    # pika says PRECONDITION_FAILED, the broker's log precondition_failed ("inequivalent arg ...").
    refused = {name: [line for line in text.splitlines() if "precondition_failed" in line.lower()]
               for name, text in logs.items()}
    assert not any(refused.values()), refused
    assert not lost, lost[:5]
    assert sorted(str(r["id"]) for r in queued_records) == sorted(f"queued-{n}" for n in range(QUEUED)), "a caller has no record"
    flow_numbers = sorted(int(str(r["id"]).removeprefix("flow-")) for r in flow_records)
    assert flow_numbers == list(range(len(flow_records))), "a flow request went missing"
    assert all(runs.get(str(r["id"])) for r in records), "an answered request has no run of the handler"
    assert not unflagged, f"requests ran again without the redelivered flag: {list(unflagged.items())[:5]}"
    assert by_new >= QUEUED // 2, "the queued requests were not left for the new consumer: the check proves little"
    assert waited, "no request waited through the producer's restart: the check proves little"

    # The new release runs, in new processes, on the previous release's configuration files.
    assert host.run(["dpkg-query", "-W", "-f=${Version}", "burrow"]).stdout == deb_version(new_deb)
    for unit in (CONSUMER, PRODUCER):
        assert show(host, unit, "ActiveState") == "active", unit
        assert show(host, unit, "MainPID") != before[unit], f"{unit} was not restarted"
    assert {path: sha256(host, path) for path in CONFIGS} == configs, "the upgrade changed a configuration file"
    logger.info("/etc/burrow after the upgrade: %s", host.run(["ls", "/etc/burrow"]).stdout.split())
    for path in CONFIGS:
        check = host.run(["burrow", "check-config", "--role", Path(path).stem, path], check=False,
                         env={"PYTHONPATH": HANDLER_DIR})
        assert check.returncode == 0, f"this release refuses the previous release's {path}:\n{check.stdout}{check.stderr}"
        assert Path(path).stem == "producer" or "handler: upgradetest:handle (imports)" in check.stdout, check.stdout
    # The default service: burrow.requests, which the new consumer reads; no other request queue.
    queues = host.run(["rabbitmqctl", "-q", "list_queues", "name"], timeout=60).stdout.split()
    logger.info("queues after the upgrade: %s", queues)
    assert [q for q in queues if q.startswith("burrow.requests")] == ["burrow.requests"], queues
    consumers = json.loads(host.run(["rabbitmqctl", "-q", "list_consumers", "--formatter", "json"], timeout=60).stdout)
    assert "burrow.requests" in {c["queue_name"] for c in consumers}, consumers
