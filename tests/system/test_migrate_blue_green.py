"""``ansible/migrate-blue-green.yml`` moves a live deployment from Debian 12 to Debian 13 under load.

Three booted hosts on one bridge, each in its own network namespace: ``blue`` (Debian 12, RabbitMQ
3.10: a broker and a consumer daemon), ``app`` (Debian 12: the producer daemon) and ``green``
(Debian 13, RabbitMQ 4.0: the new broker and its consumer daemon). One broker per side keeps the run
short; the playbook drains and retires clusters the same way (a queue's messages are counted
cluster-wide). The real ``ansible-playbook site.yml`` deploys blue and app over SSH, then a steady
load of 10 requests/s runs through the producer's HTTP API (``cluster_load.py`` inside ``app``,
one id per request, 30 s deadline) while ``migrate-blue-green.yml`` runs: green deployed, consumers
on both sides, the producer moved to green, blue's queues shoveled into green, blue's consumers
stopped, blue retired. Before it, 20 dead letters wait in blue's ``burrow.dead``; once the producer
is on green, a backlog of requests nobody waits for any more (published to blue without a deadline,
as an old producer's leftovers) is left in blue's ``burrow.requests`` for blue's consumers and the
shovel to share.

Counted by id from the callers' side (tests/system/test_cluster.py's accounting): every request of
the load answered with its own reply, none failed (a planned move, like a rolling restart); every
handler run of an id beyond its first carries the redelivered flag. Every backlog id ran (on blue
or on green), every dead letter is in green's ``burrow.dead``. The tally goes to
``$BURROW_RELIABILITY_DIR/migrate-blue-green.json`` (``make test-migrate``; default build/reliability).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tallies import ScenarioRun  # tests/support

from .nspawn import RELEASES, Host, Network, SSHKey, ensure_root, wait_until, write_inventory
from .test_cluster import HANDLERS, HEARTBEAT, LOAD_IN_HOST, LOAD_SCRIPT, RECORD_DROPIN, REQUEST_TIMEOUT, Load, handler_runs, tally
from .test_deploy import ANSIBLE_DIR, CONSUMER_USER, DEPLOY_PACKAGES, PRODUCER_USER, VHOST, recap, run_playbook

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.system, pytest.mark.timeout(2400)]

MIGRATE = ANSIBLE_DIR / "migrate-blue-green.yml"
#: Host name -> Debian release.
HOSTS = {"blue": "bookworm", "app": "bookworm", "green": "trixie"}
OPERATOR_USER = "burrow-operator"
SCENARIO = "migrate-blue-green"
DEAD_LETTERS = 20
BACKLOG = 300
PLAYBOOK_TIMEOUT = 1800
PACKAGE_PYTHON = "/opt/venvs/burrow/bin/python"
#: What ScenarioRun.save adds to a tally itself.
RUN_FIELDS = ("scenario", "title", "command", "revision", "date", "result", "reason")
#: The migration's own counts, repeated in the tally's notes (the report's last column).
NOTED = ("backlog_sent", "backlog_ran_on_blue", "backlog_ran_on_green", "dead_letters_on_green", "migrate_playbook_s")
#: Publishes "<prefix>-<n>" for n < count, persistent and confirmed, read from stdin as
#: "user password exchange routing_key reply_to prefix count" (no secret in argv); prints the count.
PUBLISH = r"""
import sys, pika
user, password, exchange, key, reply_to, prefix, count = sys.stdin.read().split()
connection = pika.BlockingConnection(pika.ConnectionParameters(
    "localhost", 5672, "burrow", pika.PlainCredentials(user, password), connection_attempts=3, retry_delay=2))
channel = connection.channel()
channel.confirm_delivery()
for n in range(int(count)):
    rid = f"{prefix}-{n:06d}"
    properties = pika.BasicProperties(delivery_mode=2, correlation_id=rid, message_id=rid,
                                      reply_to=None if reply_to == "-" else reply_to)
    channel.basic_publish(exchange, "" if key == "-" else key, rid.encode(), properties, mandatory=True)
connection.close()
print(count)
"""
#: Reads every message of burrow.dead without acknowledging it (they go back when the connection
#: closes) and prints their correlation ids as JSON; "user password" on stdin.
READ_DEAD = r"""
import json, sys, pika
user, password = sys.stdin.read().split()
connection = pika.BlockingConnection(pika.ConnectionParameters(
    "localhost", 5672, "burrow", pika.PlainCredentials(user, password), connection_attempts=3, retry_delay=2))
channel = connection.channel()
ids = []
while True:
    method, properties, body = channel.basic_get("burrow.dead", auto_ack=False)
    if method is None:
        break
    ids.append(properties.correlation_id)
connection.close()
print(json.dumps(ids))
"""


@dataclass
class Deployment:
    """What test_cluster's ``Load`` and ``tally`` need (``producer``, ``consumers``, ``tmp``), and more."""

    blue: Host
    app: Host
    green: Host
    inventory: Path
    tmp: Path
    passwords: dict[str, str]

    @property
    def producer(self) -> Host:
        return self.app

    @property
    def consumers(self) -> list[Host]:
        return [self.blue, self.green]


def handlers_path(suite: str) -> str:
    """Where the test handler goes: the package venv's stdlib folder, Debian's python3 of the release."""
    return f"/usr/lib/python{RELEASES[suite][1]}/burrow_test_handlers.py"


@pytest.fixture(scope="module")
def deployment(
    nspawn_root: Path, ssh_key: SSHKey, deb_for: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """Boot blue, app and green; deploy blue and app with site.yml (green waits for the migration)."""
    tmp = tmp_path_factory.mktemp("migrate")
    roots = {suite: ensure_root(DEPLOY_PACKAGES, suite) for suite in set(HOSTS.values())}
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(Network())
        booted = {}
        for name, suite in HOSTS.items():
            host = Host(name, roots[suite], ssh_key=ssh_key, network=network)
            stack.callback(host.close)
            if name == "app":
                # The root has rabbitmq-server installed (and enabled): only brokers run it.
                (host.rootdir / "etc/systemd/system/rabbitmq-server.service").symlink_to("/dev/null")
            host.boot()
            booted[name] = host
        for host in booted.values():
            host.update_hosts_file()
            host.wait_for_ssh()
        for name in ("blue", "green"):
            booted[name].copy_in(HANDLERS, handlers_path(HOSTS[name]))
            booted[name].write_file("/etc/systemd/system/burrow-consumer.service.d/60-test-record.conf", RECORD_DROPIN)
        booted["app"].copy_in(LOAD_SCRIPT, LOAD_IN_HOST)
        passwords = {user: secrets.token_urlsafe(24) for user in (PRODUCER_USER, CONSUMER_USER, OPERATOR_USER, "shovel")}
        site_vars: dict[str, object] = {
            "burrow_common_rabbitmq_vhost": VHOST,
            "burrow_common_rabbitmq_heartbeat": HEARTBEAT,
            "burrow_producer_rabbitmq_username": PRODUCER_USER,
            "burrow_producer_rabbitmq_password": passwords[PRODUCER_USER],
            "burrow_consumer_rabbitmq_username": CONSUMER_USER,
            "burrow_consumer_rabbitmq_password": passwords[CONSUMER_USER],
            "burrow_operator_rabbitmq_username": OPERATOR_USER,
            "burrow_operator_rabbitmq_password": passwords[OPERATOR_USER],
            "burrow_migrate_shovel_password": passwords["shovel"],
            "burrow_consumer_handler": "burrow_test_handlers:record",
            "burrow_producer_request_timeout": float(REQUEST_TIMEOUT),
            # rabbitmq-server and nftables are preinstalled in the roots and the hosts have no mirror.
            "rabbitmq_apt_cache_valid_time": 10 * 365 * 86400,
        }
        inventory = write_inventory(
            tmp / "inventory.yml",
            {"brokers": [booted["blue"]], "consumers": [booted["blue"]], "producers": [booted["app"]],
             "green_brokers": [booted["green"]], "green_consumers": [booted["green"]]},
            site_vars,
        )
        # Each host gets the package of its own release.
        document = json.loads(inventory.read_text())
        for name, suite in HOSTS.items():
            document["all"]["hosts"][name]["burrow_common_deb_path"] = str(deb_for(suite))
        inventory.write_text(json.dumps(document, indent=2) + "\n")
        deployed = Deployment(booted["blue"], booted["app"], booted["green"], inventory, tmp, passwords)
        result = run_playbook(inventory, tmp, timeout=PLAYBOOK_TIMEOUT)
        if result.returncode != 0:
            pytest.fail(f"site.yml failed:\n{result.stdout[-15000:]}\n{result.stderr[-3000:]}")
        yield deployed


def queue_depths(broker: Host) -> dict[str, int]:
    output = broker.run(["rabbitmqctl", "--quiet", "list_queues", "-p", VHOST, "name", "messages", "--formatter", "json"],
                        timeout=60).stdout
    return {row["name"]: int(row["messages"]) for row in json.loads(output)}


def publish(host: Host, user: str, password: str, exchange: str, key: str, reply_to: str, prefix: str, count: int) -> None:
    """Publish ``prefix-<n>`` requests or dead letters on ``host``'s broker (confirmed)."""
    result = host.run([PACKAGE_PYTHON, "-c", PUBLISH], input=f"{user} {password} {exchange} {key} {reply_to} {prefix} {count}",
                      timeout=120)
    assert result.stdout.strip() == str(count), result.stdout + result.stderr


def producer_on(broker: Host) -> bool:
    """True once the producer has a connection to ``broker`` and its reply queue there."""
    try:
        users = broker.run(["rabbitmqctl", "--quiet", "list_connections", "user", "--formatter", "json"], timeout=30).stdout
        return any(row["user"] == PRODUCER_USER for row in json.loads(users)) and any(
            name.startswith("burrow.replies.app.") for name in queue_depths(broker))
    except (subprocess.SubprocessError, ValueError):
        return False


def test_migration_under_load_loses_no_request(deployment: Deployment, request: pytest.FixtureRequest) -> None:
    """The blue-green move from Debian 12 (RabbitMQ 3.10) to Debian 13 (RabbitMQ 4.0) under a steady
    load: green deployed, consumers on both sides, the producer moved, blue's request and dead-letter
    queues shoveled into green, blue's consumers stopped, blue retired. No request may fail."""
    blue, green, passwords = deployment.blue, deployment.green, deployment.passwords
    run = ScenarioRun(SCENARIO, " ".join((test_migration_under_load_loses_no_request.__doc__ or "").split()),
                      f"make test-migrate PYTEST_ARGS='{request.node.nodeid}'")
    request.node.reliability_run = run
    publish(blue, CONSUMER_USER, passwords[CONSUMER_USER], "burrow.x.dead", "-", "-", "dead", DEAD_LETTERS)
    # A quorum queue's depth shows in list_queues with the next statistics round (every 5 s).
    wait_until(lambda: queue_depths(blue)["burrow.dead"] == DEAD_LETTERS, 30, "the dead letters in blue's burrow.dead", 1)

    load = Load(deployment, "migrate", 20000)  # type: ignore[arg-type]
    run.partial = lambda: {"sent": len(load.outcomes())}
    backlog_left = {}
    started = time.monotonic()
    try:
        load.wait_done(50)
        with ThreadPoolExecutor(1) as runner:
            migration = runner.submit(run_playbook, deployment.inventory, deployment.tmp, playbook=MIGRATE,
                                      timeout=PLAYBOOK_TIMEOUT)
            # Once the producer publishes to green, blue gets a backlog nobody waits for; its
            # replies go to the producer's reply queue (which logs them as orphans).
            wait_until(lambda: migration.done() or producer_on(green), PLAYBOOK_TIMEOUT, "the producer on green", 1)
            if not migration.done():
                publish(blue, PRODUCER_USER, passwords[PRODUCER_USER], "burrow.x.requests", "burrow.requests",
                        next(name for name in queue_depths(blue) if name.startswith("burrow.replies.app.")),
                        "backlog", BACKLOG)
                backlog_left = queue_depths(blue)
            result = migration.result()
        migrate_seconds = time.monotonic() - started
        load.wait_done(len(load.outcomes()) + 100)
    finally:
        load.stop()
    (deployment.tmp / "migrate.out").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-15000:] + result.stderr[-3000:]
    logger.info("migrate-blue-green.yml took %.0f s; blue's queues just after the backlog: %s", migrate_seconds, backlog_left)

    # The backlog, by id: each ran once at least, a second run only flagged redelivered.
    backlog = handler_runs(deployment, "backlog")  # type: ignore[arg-type]
    on_side = {host.name: len(handler_runs(deployment, "backlog", [host])) for host in (blue, green)}  # type: ignore[arg-type]
    backlog_missing = sorted({f"backlog-{n:06d}" for n in range(BACKLOG)} - set(backlog))
    backlog_unflagged = {rid: flags for rid, flags in backlog.items() if flags.count(False) > 1}
    dead = json.loads(green.run([PACKAGE_PYTHON, "-c", READ_DEAD], input=f"{OPERATOR_USER} {passwords[OPERATOR_USER]}",
                                timeout=60).stdout)
    dead_counts = collections.Counter(dead)
    extra = {
        "hosts": "blue: Debian 12 broker + consumer; app: Debian 12 producer; green: Debian 13 broker + consumer",
        "migrate_playbook_s": round(migrate_seconds, 1),
        "backlog_sent": BACKLOG if backlog_left else 0,
        "backlog_ran_on_blue": on_side["blue"],
        "backlog_ran_on_green": on_side["green"],
        "backlog_lost": len(backlog_missing),
        "backlog_duplicates_unexplained": len(backlog_unflagged),
        "dead_letters_sent": DEAD_LETTERS,
        "dead_letters_on_green": sum(1 for n in range(DEAD_LETTERS) if dead_counts[f"dead-{n:06d}"] == 1),
    }
    bad = {key: extra[key] for key in ("backlog_lost", "backlog_duplicates_unexplained") if extra[key]}
    if extra["dead_letters_on_green"] != DEAD_LETTERS:
        bad["dead_letters_on_green"] = extra["dead_letters_on_green"]
    run.partial = lambda: extra
    try:
        tally(deployment, load, run, planned=True)  # type: ignore[arg-type]
    finally:
        # The load's tally, saved by tally() (failed when its counts fail), with the backlog's and
        # the dead letters' counts added.
        if run.document is not None:
            reasons = [reason for reason in (run.document.get("reason"), str(bad) if bad else None) if reason]
            counted = {key: value for key, value in run.document.items() if key not in RUN_FIELDS}
            counted["notes"] = {**counted.get("notes", {}), **{key.replace("_", " "): extra[key] for key in NOTED}}
            run.save({**counted, **extra}, "; ".join(reasons) or None)
            logger.info("migration tally: %s", run.document)

    assert backlog_left, "the producer never reached green while the playbook ran"
    assert not backlog_missing, backlog_missing[:5]
    assert not backlog_unflagged, list(backlog_unflagged.items())[:5]
    assert sorted(dead) == sorted(f"dead-{n:06d}" for n in range(DEAD_LETTERS)), dead
    # Every request after the move ran on green; blue's consumers and broker are stopped.
    assert blue.run(["systemctl", "is-active", "burrow-consumer.service", "rabbitmq-server.service"],
                    check=False).stdout.split() == ["inactive", "inactive"]
    assert blue.run(["systemctl", "is-enabled", "rabbitmq-server.service"], check=False).stdout.strip() == "disabled"
    config = deployment.app.run(["cat", "/etc/burrow/producer.toml"]).stdout
    assert 'host = "green"' in config, config
    # No shovel is left, and the shovels' credentials are in no output, log or file.
    assert green.run(["rabbitmqctl", "--quiet", "list_parameters", "-p", VHOST]).stdout.strip() == ""
    assert not green.run(["test", "-e", "/var/lib/rabbitmq/burrow-migrate-shovels.json"], check=False).returncode == 0
    logs = green.run("cat /var/log/rabbitmq/*.log; journalctl --no-pager --boot", timeout=60).stdout
    assert passwords["shovel"] not in result.stdout + result.stderr
    assert passwords["shovel"] not in logs
    assert {name: stats["failed"] for name, stats in recap(result).items()} == {"blue": 0, "app": 0, "green": 0}


def test_site_yml_then_manages_green_and_changes_nothing(deployment: Deployment) -> None:
    """After the move the inventory says what runs (green_brokers become brokers, green_consumers
    consumers, blue goes); site.yml on it changes nothing, and a request goes through green."""
    document = json.loads(deployment.inventory.read_text())
    children = document["all"]["children"]
    children["brokers"] = children.pop("green_brokers")
    children["consumers"] = children.pop("green_consumers")
    del document["all"]["hosts"]["blue"]
    after = deployment.tmp / "inventory-after.yml"
    after.write_text(json.dumps(document, indent=2) + "\n")
    after.chmod(0o600)
    result = run_playbook(after, deployment.tmp, timeout=PLAYBOOK_TIMEOUT)
    assert result.returncode == 0, result.stdout[-15000:] + result.stderr[-3000:]
    assert {name: stats["changed"] for name, stats in recap(result).items()} == {"app": 0, "green": 0}, result.stdout[-6000:]
    reply = deployment.app.run(["burrow", "send", "--timeout", "30", "after the move"], check=False, timeout=60)
    assert reply.stdout.strip() == "Consumer processed: after the move", reply.stdout + reply.stderr
