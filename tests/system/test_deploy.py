"""The real ``ansible-playbook ansible/site.yml`` deploys burrow onto booted Debian hosts, as onto VMs.

Each scenario boots nspawn containers (systemd as PID 1, sshd) from a cached Debian root with the
release's rabbitmq-server preinstalled (the hosts have no mirror): the one-host scenario on Debian 13
and 12, the three-host one on Debian 13, writes an inventory for them and
runs the playbook over SSH twice: the first run must succeed and end with its own smoke tests, the
second must change nothing. Then the deployment is checked from outside: a request through the
producer's socket, the consumer's journal, the broker's users and permissions, a broker restart with
requests queued, the policies that keep a dead letter through any number of reads, and a reboot of
every host.

Scenarios, in file order: one host carrying all three roles, then broker, producer and consumer on
three hosts in their own network namespaces (the daemons reach the broker through the IP firewall
drop-in the roles add).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import subprocess
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .daemonhost import curl_request
from .nspawn import DEFAULT_SUITE, RELEASES, REPO, Host, SSHKey, ensure_root, hosts, wait_until, write_inventory

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

ANSIBLE_DIR = REPO / "ansible"
PLAYBOOK = ANSIBLE_DIR / "site.yml"
# Debian's ansible: it ships community.rabbitmq, which the roles use.
ANSIBLE_PLAYBOOK = "/usr/bin/ansible-playbook"
VHOST = "burrow"
PRODUCER_USER = "burrow-producer"
CONSUMER_USER = "burrow-consumer"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)
# Runs inside a host with the package's own Python and pika: log in, then try one operation.
# Reads "user password vhost operation" from stdin (no secret in argv) and prints one JSON line.
AMQP_PROBE = r"""
import json, sys, pika
user, password, vhost, operation = sys.stdin.read().split()
result = {"connected": False, "error": None}
try:
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        "localhost", 5672, vhost, pika.PlainCredentials(user, password), connection_attempts=1, socket_timeout=5))
    result["connected"] = True
    channel = connection.channel()
    if operation == "consume-requests":
        channel.basic_consume("burrow.requests", lambda *args: None)
    elif operation == "publish-request":
        channel.confirm_delivery()
        channel.basic_publish("burrow.x.requests", "burrow.requests", b"probe", mandatory=True)
    elif operation == "publish-dead-letter":
        channel.confirm_delivery()
        channel.basic_publish("burrow.x.dead", "", b"dead probe", pika.BasicProperties(correlation_id="dead-probe"))
    connection.close()
except pika.exceptions.ChannelClosedByBroker as exc:
    result["error"] = {"code": exc.reply_code, "text": exc.reply_text}
except pika.exceptions.AMQPConnectionError as exc:
    result["error"] = {"code": None, "text": type(exc).__name__ + ": " + str(exc)}
print(json.dumps(result))
"""


@dataclass
class Deployment:
    """Booted hosts with burrow deployed by the playbook, and what the two runs printed."""

    broker: Host
    producer: Host
    consumer: Host
    inventory: Path
    passwords: dict[str, str]
    runs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)


#: What the roles install on top of the base root; the hosts have no mirror inside private networks.
DEPLOY_PACKAGES = ["rabbitmq-server", "nftables"]


@pytest.fixture(scope="module")
def deploy_root(nspawn_root: Path, suite: str) -> Path:
    """The cached root of each Debian release plus its rabbitmq-server and nftables (the broker's
    firewall)."""
    return ensure_root(DEPLOY_PACKAGES, suite)


@pytest.fixture(scope="module")
def burrow_deb(suite: str, deb_for: Callable[[str], Path]) -> Path:
    """The package of the release the module's hosts run (the role's default picks it by release too)."""
    return deb_for(suite)


def run_playbook(
    inventory: Path, tmp: Path, *extra: str, playbook: Path = PLAYBOOK, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``playbook`` (site.yml) against ``inventory`` with the repository's ansible.cfg; output captured.

    Past ``timeout`` the test fails with the output so far (the task it was stuck in).
    """
    if not Path(ANSIBLE_PLAYBOOK).exists():
        pytest.fail(f"{ANSIBLE_PLAYBOOK} is missing: run scripts/install-system-test-deps.sh")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp / "cp"),
        # Timestamped, and kept when the run times out (its captured output is lost then).
        "ANSIBLE_LOG_PATH": str(tmp / "ansible.log"),
    }
    started = time.monotonic()
    try:
        result = subprocess.run(
            [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(playbook), *extra],
            cwd=ANSIBLE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"ansible-playbook {playbook.name} {' '.join(extra)} still running after {timeout:.0f} s:\n"
                    + output[-12000:])
    logger.info(
        "ansible-playbook %s %s exited %d in %.0f s",
        playbook.name,
        " ".join(extra),
        result.returncode,
        time.monotonic() - started,
    )
    return result


def recap(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    """The PLAY RECAP as {host: {ok, changed, unreachable, failed}}."""
    return {
        match[1]: {"ok": int(match[2]), "changed": int(match[3]), "unreachable": int(match[4]), "failed": int(match[5])}
        for match in RECAP.finditer(result.stdout)
    }


def task_results(result: subprocess.CompletedProcess[str], name: str) -> list[str]:
    """What each host did for the task named ``name`` ("ok", "changed", "skipping", ...), from
    the default callback's ``TASK [role : name] ***`` block. ansible prints the header of a
    skipped task too, so a name in the output alone does not mean the task ran."""
    outcomes = []
    for block in result.stdout.split("\nTASK [")[1:]:
        header, _, body = block.partition("\n")
        if header.split("]", 1)[0].endswith(f": {name}") or header.startswith(f"{name}]"):
            outcomes += re.findall(r"^(ok|changed|skipping|failed|fatal): \[", body, re.MULTILINE)
    return outcomes


def deploy(
    broker: Host,
    producer: Host,
    consumer: Host,
    tmp: Path,
    deb: Path,
    broker_address: str,
    extra_vars: dict[str, object] | None = None,
    runs: int = 2,
) -> Deployment:
    """Write the inventory (0600, fresh random passwords, ``extra_vars`` last) and run the playbook
    ``runs`` times (the second run, with -v, is the idempotence check)."""
    for host in {h.name: h for h in (broker, producer, consumer)}.values():
        host.wait_for_ssh()
    passwords = {PRODUCER_USER: secrets.token_urlsafe(24), CONSUMER_USER: secrets.token_urlsafe(24)}
    site_vars = {
        "burrow_common_deb_path": str(deb),
        "burrow_common_rabbitmq_hosts": [broker_address],
        "burrow_common_rabbitmq_vhost": VHOST,
        "burrow_common_log_level": "DEBUG",
        "burrow_producer_rabbitmq_username": PRODUCER_USER,
        "burrow_producer_rabbitmq_password": passwords[PRODUCER_USER],
        "burrow_consumer_rabbitmq_username": CONSUMER_USER,
        "burrow_consumer_rabbitmq_password": passwords[CONSUMER_USER],
        # rabbitmq-server is preinstalled in the root and the hosts have no mirror: never refresh.
        "rabbitmq_apt_cache_valid_time": 10 * 365 * 86400,
        **(extra_vars or {}),
    }
    inventory = write_inventory(
        tmp / "inventory.yml",
        {"brokers": [broker], "producers": [producer], "consumers": [consumer]},
        site_vars,
    )
    deployment = Deployment(broker, producer, consumer, inventory, passwords)
    for extra in ((), ("-v",))[:runs]:
        result = run_playbook(inventory, tmp, *extra)
        deployment.runs.append(result)
        if result.returncode != 0:
            pytest.fail(
                f"ansible-playbook {' '.join(extra)} failed:\n{result.stdout[-12000:]}\n{result.stderr[-3000:]}"
            )
    return deployment


@pytest.fixture(scope="module")
def single(
    deploy_root: Path, ssh_key: SSHKey, burrow_deb: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """One host in its own network namespace with all three roles (broker on localhost)."""
    tmp = tmp_path_factory.mktemp("deploy-single")
    with hosts(deploy_root, ["allinone"], ssh_key=ssh_key, private_network=True) as (host,):
        yield deploy(host, host, host, tmp, burrow_deb, "localhost")


@pytest.fixture(scope="module")
def multi(
    nspawn_root: Path, ssh_key: SSHKey, deb_for: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """Broker, producer and consumer on three hosts, each in its own network namespace: on Debian 13
    only (Debian 12's smaller run keeps the one-host deployment)."""
    tmp = tmp_path_factory.mktemp("deploy-multi")
    names = ["broker", "producer", "consumer1"]
    root = ensure_root(DEPLOY_PACKAGES, DEFAULT_SUITE)
    with hosts(root, names, ssh_key=ssh_key, private_network=True) as (broker, producer, consumer):
        yield deploy(broker, producer, consumer, tmp, deb_for(DEFAULT_SUITE), "broker")


def send(producer: Host, body: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``burrow send BODY`` on the producer host, through the producer's Unix socket."""
    return producer.run(["burrow", "send", "--timeout", str(timeout), body], check=False, timeout=timeout + 30)


def amqp_probe(deployment: Deployment, user: str, password: str, operation: str) -> dict[str, object]:
    """Run :data:`AMQP_PROBE` on the broker host, which also carries the package (single-host scenario)."""
    result = deployment.broker.run(
        ["/opt/venvs/burrow/bin/python", "-c", AMQP_PROBE], input=f"{user} {password} {VHOST} {operation}"
    )
    return json.loads(result.stdout)


def queue_depths(broker: Host) -> dict[str, int]:
    """Messages ready + unacked per queue in the burrow vhost."""
    output = broker.run(
        ["rabbitmqctl", "--quiet", "list_queues", "-p", VHOST, "name", "messages", "--formatter", "json"]
    ).stdout
    return {entry["name"]: int(entry["messages"]) for entry in json.loads(output)}


def units_active(host: Host, units: list[str]) -> bool:
    """True when every unit is active on ``host``."""
    states = host.run(["systemctl", "is-active", *units], check=False).stdout.split()
    return states == ["active"] * len(units)


# --- single host: all three roles on one machine --------------------------------------------------


def test_playbook_succeeds_and_a_second_run_changes_nothing(single: Deployment) -> None:
    first, second = single.runs
    assert recap(first)["allinone"]["failed"] == 0
    assert recap(first)["allinone"]["changed"] > 0
    # The smoke tests ran (not skipped) as the last task of each role.
    for task in ("Check that every listener of the broker accepts TCP connections.",
                 "Check that every consumer is connected and consuming.",
                 "Send a request through the producer's socket and check the consumers' reply."):
        outcomes = task_results(first, task)
        assert outcomes and set(outcomes) <= {"ok", "changed"}, f"{task!r}: {outcomes or 'not in the output'}"
    assert recap(second) == {
        "allinone": {"ok": recap(second)["allinone"]["ok"], "changed": 0, "unreachable": 0, "failed": 0}
    }


def test_passwords_stay_out_of_output_configs_and_logs(single: Deployment) -> None:
    host = single.broker
    journal = host.run(["journalctl", "--no-pager", "--boot", "--output=cat"]).stdout
    configs = host.run(
        ["cat", "/etc/burrow/producer.toml", "/etc/burrow/consumer.toml", "/etc/rabbitmq/rabbitmq.conf"]
    ).stdout
    for user, password in single.passwords.items():
        for run in single.runs:
            assert password not in run.stdout + run.stderr, f"{user}'s password in ansible-playbook output"
        assert password not in journal, f"{user}'s password in the journal"
        assert password not in configs, f"{user}'s password in a config file"
    for role in ("producer", "consumer"):
        stat = host.run(["stat", "-c", "%a %U %G", f"/etc/burrow/credentials/{role}-amqp-password"]).stdout.split()
        assert stat == ["600", "root", "root"]
        assert host.run(["stat", "-c", "%a %U %G", f"/etc/burrow/{role}.toml"]).stdout.split() == [
            "640",
            "root",
            "burrow",
        ]
    assert 'password_file = "${CREDENTIALS_DIRECTORY}/amqp-password"' in configs


def test_burrow_send_hello_gets_the_consumers_reply(single: Deployment) -> None:
    result = send(single.producer, "hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Consumer processed: hello"


def test_the_request_shows_in_the_consumer_journal(single: Deployment) -> None:
    status, headers, body = curl_request(single.producer, "journal probe")
    assert (status, body) == (200, "Consumer processed: journal probe"), headers
    correlation_id = headers["x-burrow-correlation-id"]

    def logged() -> bool:
        command = ["journalctl", "--no-pager", "-u", "burrow-consumer", f"CORRELATION_ID={correlation_id}"]
        return correlation_id in single.consumer.run([*command, "--output=verbose"]).stdout

    wait_until(logged, 15, f"request {correlation_id} in journalctl -u burrow-consumer")


def test_guest_is_deleted_and_cannot_log_in(single: Deployment) -> None:
    users = json.loads(single.broker.run(["rabbitmqctl", "--quiet", "list_users", "--formatter", "json"]).stdout)
    assert sorted(user["user"] for user in users) == [CONSUMER_USER, PRODUCER_USER]
    # From localhost, so the broker's loopback-only rule for guest is not what refuses it; the
    # same probe as a real user logs in, so the refusal is guest's, not an unreachable broker.
    assert amqp_probe(single, PRODUCER_USER, single.passwords[PRODUCER_USER], "login")["connected"] is True
    probe = amqp_probe(single, "guest", "guest", "login")
    assert probe["connected"] is False
    assert "ACCESS_REFUSED - Login was refused" in str(probe["error"]["text"]), probe


def test_producer_user_cannot_consume_requests_and_consumer_user_cannot_publish_them(single: Deployment) -> None:
    producer = amqp_probe(single, PRODUCER_USER, single.passwords[PRODUCER_USER], "consume-requests")
    assert producer["connected"] is True
    assert producer["error"] is not None and producer["error"]["code"] == 403
    assert "access to queue 'burrow.requests' in vhost 'burrow' refused" in str(producer["error"]["text"])
    consumer = amqp_probe(single, CONSUMER_USER, single.passwords[CONSUMER_USER], "publish-request")
    assert consumer["connected"] is True
    assert consumer["error"] is not None and consumer["error"]["code"] == 403
    assert "access to exchange 'burrow.x.requests' in vhost 'burrow' refused" in str(consumer["error"]["text"])
    # The right users may: a normal request still goes through afterwards.
    assert send(single.producer, "still allowed").stdout.strip() == "Consumer processed: still allowed"


def test_broker_restart_with_requests_queued_loses_nothing(single: Deployment) -> None:
    count = 20
    broker, producer, consumer = single.broker, single.producer, single.consumer
    consumer.systemctl("stop", "burrow-consumer.service")
    outcome: dict[str, subprocess.CompletedProcess[str]] = {}

    def burst() -> None:
        outcome["burst"] = producer.run(
            ["burrow", "send", "--count", str(count), "--concurrency", str(count), "--timeout", "180", "queued"],
            check=False,
            timeout=240,
        )

    sender = threading.Thread(target=burst, name="burst")
    sender.start()
    try:
        wait_until(lambda: queue_depths(broker).get("burrow.requests") == count, 60, f"{count} queued requests")
        broker.systemctl("restart", "rabbitmq-server.service")
        broker.run(["rabbitmqctl", "--quiet", "await_startup", "--timeout", "120"], timeout=150)
        # A quorum queue reports its messages once it has replayed its log after the boot.
        wait_until(lambda: queue_depths(broker).get("burrow.requests") == count, 60, "the requests after the restart")
    finally:
        consumer.systemctl("start", "burrow-consumer.service")
        sender.join(timeout=260)
    assert not sender.is_alive()
    result = outcome["burst"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{count} requests, 0 failed" in result.stdout
    wait_until(lambda: queue_depths(broker).get("burrow.requests") == 0, 30, "the request queue to drain")
    assert queue_depths(broker).get("burrow.dead", 0) == 0


#: Runs of ``burrow dead list`` a dead letter must survive: RabbitMQ 4.0's default delivery limit
#: of 20 drops it after the 21st.
DEAD_LETTER_READS = 25


def policies(broker: Host) -> dict[str, dict[str, object]]:
    """Policy name -> definition in the burrow vhost."""
    output = broker.run(["rabbitmqctl", "--quiet", "list_policies", "-p", VHOST, "--formatter", "json"]).stdout
    return {entry["name"]: entry["definition"] if isinstance(entry["definition"], dict)
            else json.loads(entry["definition"]) for entry in json.loads(output)}


def test_policies_lift_the_delivery_limit_only_where_rabbitmq_sets_one(single: Deployment, suite: str) -> None:
    """On RabbitMQ 4.0 (Debian 13) the policies of the queues whose messages are read and given back
    lift the delivery limit (-1); on 3.10 (Debian 12), which has no default limit and refuses -1,
    they name none, and the reply queues' policy, with nothing else to set, is not there."""
    broker = single.broker
    unlimited = {"delivery-limit": -1} if RELEASES[suite][0] >= 13 else {}
    expected = {
        "burrow-dead": {"max-length": 100000, "overflow": "reject-publish", **unlimited},
        "burrow-dead-notices": {"max-length": 10000, "overflow": "drop-head", **unlimited},
    }
    if unlimited:
        expected["burrow-replies"] = unlimited
    assert {name: definition for name, definition in policies(broker).items() if name != "burrow-requests"} == expected
    output = broker.run(
        ["rabbitmqctl", "--quiet", "list_queues", "-p", VHOST, "name", "policy", "--formatter", "json"]).stdout
    applied = {entry["name"]: entry["policy"] for entry in json.loads(output)}
    assert (applied["burrow.dead"], applied["burrow.dead.notices"]) == ("burrow-dead", "burrow-dead-notices")


def test_a_dead_letter_survives_repeated_reads_by_burrow_dead_list(single: Deployment) -> None:
    """Each ``burrow dead list`` gives every dead letter back, which counts as a delivery."""
    broker = single.broker
    # An operator's user as the role creates it (burrow_operator_rabbitmq_username), for this test only.
    operator, password = "burrow-dead-reader", secrets.token_urlsafe(24)
    broker.run(["rabbitmqctl", "add_user", operator], input=password)
    try:
        broker.run(["rabbitmqctl", "set_permissions", "-p", VHOST, operator,
                    "^$", r"^burrow\.x\.requests$", r"^burrow\.dead$"])
        broker.write_file("/root/dead-reader-password", password, mode=0o600)
        broker.write_file("/root/dead-reader.toml", f'[rabbitmq]\nvirtual_host = "{VHOST}"\nusername = "{operator}"\n'
                          'password_file = "/root/dead-reader-password"\n')
        probe = amqp_probe(single, CONSUMER_USER, single.passwords[CONSUMER_USER], "publish-dead-letter")
        assert probe == {"connected": True, "error": None}, probe
        wait_until(lambda: queue_depths(broker).get("burrow.dead") == 1, 30, "the dead letter in burrow.dead")
        listed = []
        for _ in range(DEAD_LETTER_READS):
            result = broker.run(["burrow", "dead", "list", "--config", "/root/dead-reader.toml"], timeout=60)
            listed.append("dead-probe" in result.stdout)
        last = max((n + 1 for n, seen in enumerate(listed) if seen), default=0)
        assert listed == [True] * DEAD_LETTER_READS, (
            f"the dead letter was listed by {sum(listed)} of {DEAD_LETTER_READS} reads, the last of them read {last}")
    finally:
        broker.run(["rabbitmqctl", "delete_user", operator], check=False)
        broker.run(["rabbitmqctl", "--quiet", "purge_queue", "-p", VHOST, "burrow.dead"], check=False)
        broker.run(["rm", "-f", "/root/dead-reader-password", "/root/dead-reader.toml"], check=False)


def test_all_units_are_active_after_a_reboot(single: Deployment) -> None:
    host = single.broker
    units = ["rabbitmq-server.service", "burrow-consumer.service", "burrow-producer.socket", "burrow-producer.service"]
    host.reboot()
    wait_until(lambda: units_active(host, units), 120, "all units active after the reboot")
    assert send(single.producer, "after reboot").stdout.strip() == "Consumer processed: after reboot"


# --- three hosts in their own network namespaces --------------------------------------------------


def test_multi_host_playbook_succeeds_and_a_second_run_changes_nothing(multi: Deployment) -> None:
    first, second = multi.runs
    assert set(recap(first)) == {"broker", "producer", "consumer1"}
    assert all(stats["failed"] == 0 and stats["unreachable"] == 0 for stats in recap(first).values())
    assert {name: stats["changed"] for name, stats in recap(second).items()} == {
        "broker": 0,
        "producer": 0,
        "consumer1": 0,
    }
    # The broker host runs no burrow daemon, the daemon hosts no broker.
    assert multi.broker.run(["test", "-e", "/etc/burrow/producer.toml"], check=False).returncode != 0
    assert multi.producer.run(["test", "-e", "/etc/rabbitmq/rabbitmq.conf"], check=False).returncode != 0


def test_multi_host_daemons_reach_the_broker_through_the_firewall_drop_in(multi: Deployment) -> None:
    broker_address = multi.broker.address
    for host, role in ((multi.producer, "producer"), (multi.consumer, "consumer")):
        allowed = host.systemctl("show", "--property=IPAddressAllow", f"burrow-{role}.service").stdout
        assert broker_address in allowed, allowed
        config = tomllib.loads(host.run(["cat", f"/etc/burrow/{role}.toml"]).stdout)
        assert config["rabbitmq"]["host"] == "broker"
    result = send(multi.producer, "across hosts")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Consumer processed: across hosts"


def test_multi_host_units_come_back_after_every_host_reboots(multi: Deployment) -> None:
    for host in (multi.broker, multi.consumer, multi.producer):
        host.reboot()
    wait_until(lambda: units_active(multi.broker, ["rabbitmq-server.service"]), 120, "the broker after reboot")
    wait_until(lambda: units_active(multi.consumer, ["burrow-consumer.service"]), 120, "the consumer after reboot")
    wait_until(
        lambda: units_active(multi.producer, ["burrow-producer.socket", "burrow-producer.service"]),
        120,
        "the producer after reboot",
    )
    assert send(multi.producer, "after reboots").stdout.strip() == "Consumer processed: after reboots"


def test_role_default_package_is_the_link_to_the_latest_build_of_the_hosts_release() -> None:
    """The version changes with every build, so the role copies the link build-deb.sh keeps current
    for the host's Debian release (named in the role's vars file of that release)."""
    role = ANSIBLE_DIR / "roles" / "burrow_common"
    defaults = (role / "defaults" / "main.yml").read_text(encoding="utf-8")
    assert (
        'burrow_common_deb_path: "{{ playbook_dir }}/../dist/burrow_latest_{{ __burrow_common_deb_release }}.deb"'
        in defaults
    )
    assert 'ln -sfn "$(basename "$deb")" "dist/burrow_latest_$release.deb"' in (
        REPO / "scripts" / "build-deb.sh"
    ).read_text(encoding="utf-8")
    for codename, (major, _python) in RELEASES.items():
        release_vars = (role / "vars" / f"Debian-{major}.yml").read_text(encoding="utf-8")
        assert f"__burrow_common_deb_release: deb{major}\n" in release_vars, codename
