"""A 3-node RabbitMQ cluster deployed by site.yml onto real hosts, then broken under load, Jepsen-style.

Six booted Debian hosts, each in its own network namespace on one bridge: broker1-3 (the cluster),
producer, consumer1 and consumer2 (two consumer daemons each, ``burrow-consumer@1`` and ``@2``).
The real ``ansible-playbook site.yml`` deploys them over SSH twice (the second run must change
nothing); then the cluster is checked from outside (three running nodes, a request queue member on
each, the inter-node ports closed to non-brokers) and five faults are injected while a steady load
runs through the producer daemon's HTTP API (``tests/system/cluster_load.py`` inside the producer
host, one id per request):

1. SIGKILL of the broker that leads the request queue; left down, later brought back;
2. one broker's link cut (no FIN, no RST) for longer than the heartbeat and Erlang's net_ticktime,
   so that the others declare it gone and ``pause_minority`` pauses it; then healed;
3. ``ansible-playbook rolling-restart.yml`` across the brokers, consumers and producer;
4. a rolling upgrade of the burrow .deb across the consumer hosts (``site.yml --limit consumers``);
5. one consumer host's power cut (link down, then every process SIGKILLed).

Last, a fourth broker added to the inventory joins the cluster on the next site.yml run.

Counting is from the caller's side: every id the load handed out must end with the right reply
(``answered``) or a 503/504 explained for that id (``failed_503``/``failed_504``); anything else is
``lost``. The consumers' handler (``burrow_test_handlers:record``) appends ``<id> <redelivered>
<correlation id>`` to a file on its host; every handler run of an id beyond its first must carry the
redelivery flag. Each non-answer is explained per request id by tests/support/explain.py, as in the
loopback fault scenarios (cluster_count.py): a 503 only if the request's span meets a window in
which the producer daemon had no broker connection, read from the producer host's journal; a 504
only at or after its 30-second deadline and, if the request never ran in any handler, only if the
dead-letter queue holds it by its correlation id (read without taking it, by the operators' user
that site.yml creates) or the 504 said ``"confirmed": false`` (the broker never took it). Anything
else is counted lost, and the tally lists every non-answer with its times and its explanation
(``non_answers``) beside the measured windows (``outage_windows``). A refused connection to the
producer's socket is ``refused`` and fails the scenario; scenarios 3 and 4 (planned restarts) must
fail none. Each scenario's tally goes to ``$BURROW_RELIABILITY_DIR/cluster-<scenario>.json``
(default build/reliability) through tests/support/tallies.py: written with ``result: fail`` and the
reason whenever the scenario fails, even before it could count, and added to the scenario's run
history.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pika
import pytest

from explain import dead_letters
from tallies import ScenarioRun  # tests/support

from .cluster_count import caller_counts, explain_outcomes, load_outcomes
from .nspawn import DEFAULT_SUITE, RELEASES, REPO, Host, Network, SSHKey, ensure_root, wait_until, write_inventory
from .test_deploy import ANSIBLE_DIR, CONSUMER_USER, DEPLOY_PACKAGES, PRODUCER_USER, VHOST, recap, run_playbook

logger = logging.getLogger(__name__)

# The module fixture (six hosts, two site.yml runs) counts against the first test's deadline: the
# first run alone took 1639 s on the shared 2-core machine at load average 25.
pytestmark = [pytest.mark.system, pytest.mark.cluster, pytest.mark.timeout(4800)]

BROKERS = ("broker1", "broker2", "broker3")
CONSUMERS = ("consumer1", "consumer2")
REQUEST_QUEUE = "burrow.requests"
DEAD_LETTER_QUEUE = "burrow.dead"
#: The operators' user site.yml creates for `burrow dead` (read on burrow.dead only): the test
#: reads the dead letters by id with it, from outside, without taking them.
OPERATOR_USER = "burrow-operator"
ROLLING_RESTART = ANSIBLE_DIR / "rolling-restart.yml"
LOAD_SCRIPT = Path(__file__).with_name("cluster_load.py")
HANDLERS = REPO / "tests" / "support" / "burrow_test_handlers.py"
LOAD_IN_HOST = "/usr/local/lib/burrow-test/cluster_load.py"
# The stdlib folder is on the package venv's sys.path (the venv is built on Debian's python3), so the
# test handler imports there both for `burrow check-config` during the deployment and in the units.
HANDLERS_IN_HOST = f"/usr/lib/python{RELEASES[DEFAULT_SUITE][1]}/burrow_test_handlers.py"
HANDLED_LOG = "/var/lib/burrow-test/handled.log"
HOLD = 0.5
RECORD_DROPIN = f"""\
[Service]
# The test handler appends "<id> <redelivered> <correlation id>" here: a state folder of the test's
# own, the one place besides the credentials that the sandbox (ProtectSystem=strict) lets it write.
StateDirectory=burrow-test
Environment=BURROW_TEST_RECORD={HANDLED_LOG}
# Each request stays {HOLD} s in the handler: at 10 requests/s about 5 are in the consumers' hands
# whenever a fault strikes.
Environment=BURROW_TEST_HOLD={HOLD}
"""
# Short heartbeats so that a silent peer (cut link, power loss) is noticed within seconds.
HEARTBEAT = 5
REQUEST_TIMEOUT = 30
RATE = 10.0
CONCURRENCY = 48
# Six hosts, three of them RabbitMQ nodes configured one after the other, on a shared 2-core machine.
PLAYBOOK_TIMEOUT = 1800


@dataclass
class Cluster:
    """The six deployed hosts, the inventory, and what the two site.yml runs printed."""

    brokers: list[Host]
    producer: Host
    consumers: list[Host]
    inventory: Path
    tmp: Path
    deb: Path
    network: Network
    site_vars: dict[str, object]
    runs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)
    run_seconds: list[float] = field(default_factory=list)

    def broker(self, node: str) -> Host:
        """The host of the RabbitMQ node ``rabbit@NAME``."""
        return next(host for host in self.brokers if f"rabbit@{host.name}" == node)

    def running_broker(self) -> Host:
        """A broker whose node answers (for queries while another is down or cut off)."""
        for host in self.brokers:
            if host.running and host.run(["rabbitmqctl", "--quiet", "ping"], check=False, timeout=30).returncode == 0:
                return host
        raise AssertionError("no broker answers rabbitmqctl ping")


def cluster_status(broker: Host) -> dict[str, object]:
    return json.loads(
        broker.run(["rabbitmqctl", "--quiet", "cluster_status", "--formatter", "json"], timeout=60).stdout
    )


def running_nodes(broker: Host) -> list[str]:
    return sorted(cluster_status(broker)["running_nodes"])  # type: ignore[arg-type]


def quorum_members(broker: Host, queue: str = REQUEST_QUEUE) -> list[dict[str, object]]:
    """``rabbitmq-queues quorum_status``: one entry per member with its Raft state and indexes."""
    result = broker.run(
        ["rabbitmq-queues", "--quiet", "quorum_status", queue, "--vhost", VHOST, "--formatter", "json"], timeout=60
    )
    return json.loads(result.stdout)


def queue_leader(cluster: Cluster, timeout: float = 120) -> Host:
    """The broker host whose node leads the request queue (waiting out an election in progress)."""
    found: list[Host] = []

    def elected() -> bool:
        try:
            members = quorum_members(cluster.running_broker())
        except subprocess.SubprocessError:
            return False
        found[:] = [cluster.broker(str(m["Node Name"])) for m in members if m["Raft State"] == "leader"]
        return bool(found)

    wait_until(elected, timeout, f"a leader of {REQUEST_QUEUE}", 1)
    return found[0]


def cluster_settled(cluster: Cluster) -> bool:
    """Every broker runs all three nodes and the request queue's members all follow one leader."""
    try:
        for broker in cluster.brokers:
            if running_nodes(broker) != sorted(f"rabbit@{name}" for name in BROKERS):
                return False
        states = sorted(str(member["Raft State"]) for member in quorum_members(cluster.brokers[0]))
    except subprocess.SubprocessError as exc:
        logger.info("cluster not settled yet: %s", exc)
        return False
    return states == ["follower", "follower", "leader"]


def consumer_units(host: Host) -> list[str]:
    return ["burrow-consumer@1.service", "burrow-consumer@2.service"]


def everything_up(cluster: Cluster) -> bool:
    """The cluster settled, every consumer and the producer active."""
    if not cluster_settled(cluster):
        return False
    for host in cluster.consumers:
        if host.running and host.run(["systemctl", "is-active", *consumer_units(host)], check=False).returncode != 0:
            return False
    return cluster.producer.run(["systemctl", "is-active", "burrow-producer.service"], check=False).returncode == 0


# --- the deployment ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(
    nspawn_root: Path, ssh_key: SSHKey, burrow_deb: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Boot the six hosts, prepare the test handler on the consumers, and run site.yml twice."""
    root = ensure_root(DEPLOY_PACKAGES)
    tmp = tmp_path_factory.mktemp("cluster")
    names = [*BROKERS, "producer", *CONSUMERS]
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(Network())
        booted = []
        for name in names:
            host = Host(name, root, ssh_key=ssh_key, network=network)
            stack.callback(host.close)
            if name not in BROKERS:
                # The shared root has rabbitmq-server installed (and enabled): only brokers run it.
                (host.rootdir / "etc/systemd/system/rabbitmq-server.service").symlink_to("/dev/null")
            host.boot()
            booted.append(host)
        for host in booted:
            host.update_hosts_file()
        brokers, producer, consumers = booted[:3], booted[3], booted[4:]
        for host in booted:
            host.wait_for_ssh()
        for host in consumers:
            host.copy_in(HANDLERS, HANDLERS_IN_HOST)
            host.write_file("/etc/systemd/system/burrow-consumer@.service.d/60-test-record.conf", RECORD_DROPIN)
        producer.copy_in(LOAD_SCRIPT, LOAD_IN_HOST)
        site_vars: dict[str, object] = {
            "burrow_common_deb_path": str(burrow_deb),
            "burrow_common_rabbitmq_vhost": VHOST,
            "burrow_common_rabbitmq_heartbeat": HEARTBEAT,
            "burrow_producer_rabbitmq_username": PRODUCER_USER,
            "burrow_producer_rabbitmq_password": secrets.token_urlsafe(24),
            "burrow_consumer_rabbitmq_username": CONSUMER_USER,
            "burrow_consumer_rabbitmq_password": secrets.token_urlsafe(24),
            "burrow_operator_rabbitmq_username": OPERATOR_USER,
            "burrow_operator_rabbitmq_password": secrets.token_urlsafe(24),
            "burrow_consumer_instances": 2,
            "burrow_consumer_handler": "burrow_test_handlers:record",
            "burrow_producer_request_timeout": float(REQUEST_TIMEOUT),
            "rabbitmq_erlang_cookie": secrets.token_urlsafe(32),
            # rabbitmq-server and nftables are preinstalled in the root and the hosts have no mirror.
            "rabbitmq_apt_cache_valid_time": 10 * 365 * 86400,
        }
        inventory = write_inventory(
            tmp / "inventory.yml",
            {"brokers": brokers, "producers": [producer], "consumers": consumers},
            site_vars,
        )
        deployed = Cluster(brokers, producer, consumers, inventory, tmp, burrow_deb, network, site_vars)
        for extra in ((), ("-v",)):
            started = time.monotonic()
            result = run_playbook(inventory, tmp, *extra, timeout=PLAYBOOK_TIMEOUT)
            deployed.run_seconds.append(time.monotonic() - started)
            deployed.runs.append(result)
            if result.returncode != 0:
                pytest.fail(f"site.yml {' '.join(extra)} failed:\n{result.stdout[-15000:]}\n{result.stderr[-3000:]}")
        logger.info("site.yml runs took %s s", [round(seconds) for seconds in deployed.run_seconds])
        yield deployed


def test_site_yml_forms_the_cluster_and_a_second_run_changes_nothing(cluster: Cluster) -> None:
    first, second = cluster.runs
    names = {*BROKERS, "producer", *CONSUMERS}
    assert set(recap(first)) == names
    assert all(stats["failed"] == 0 and stats["unreachable"] == 0 for stats in recap(first).values())
    assert {name: stats["changed"] for name, stats in recap(second).items()} == dict.fromkeys(names, 0)
    expected = sorted(f"rabbit@{name}" for name in BROKERS)
    for broker in cluster.brokers:
        assert running_nodes(broker) == expected, broker.name
        stat = broker.run(["stat", "-c", "%a %U", "/var/lib/rabbitmq/.erlang.cookie"]).stdout.split()
        assert stat == ["400", "rabbitmq"]
    # The request queue (declared by the daemons) has a member on each broker.
    members = quorum_members(cluster.brokers[0])
    assert sorted(str(member["Node Name"]) for member in members) == expected
    conf = cluster.brokers[0].run(["cat", "/etc/rabbitmq/rabbitmq.conf"]).stdout
    assert "cluster_formation.peer_discovery_backend = classic_config" in conf
    assert "cluster_partition_handling = pause_minority" in conf
    # RabbitMQ 4.0 (Debian 13) spreads quorum queue leaders with "balanced" (3.10's least-leaders).
    assert "queue_leader_locator = balanced" in conf


def test_daemons_know_every_broker_and_their_firewall_allows_each(cluster: Cluster) -> None:
    addresses = [broker.address for broker in cluster.brokers]
    for host in (cluster.producer, *cluster.consumers):
        unit = "burrow-producer.service" if host is cluster.producer else "burrow-consumer@1.service"
        allowed = host.systemctl("show", "--property=IPAddressAllow", unit).stdout
        assert all(address in allowed for address in addresses), (host.name, allowed)
    config = cluster.producer.run(["cat", "/etc/burrow/producer.toml"]).stdout
    assert 'hosts = ["broker1", "broker2", "broker3"]' in config
    result = cluster.producer.run(["burrow", "send", "--timeout", "30", "hello cluster"], check=False, timeout=60)
    assert result.stdout.strip() == "Consumer processed: hello cluster", result.stdout + result.stderr


PORT_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("open")
except OSError as exc:
    print(type(exc).__name__)
"""


@pytest.mark.parametrize("port", [4369, 25672])
def test_inter_node_ports_answer_brokers_only(cluster: Cluster, port: int) -> None:
    target = cluster.brokers[0].address
    from_broker = cluster.brokers[1].run(["python3", "-c", PORT_PROBE, target, str(port)]).stdout.strip()
    from_producer = cluster.producer.run(["python3", "-c", PORT_PROBE, target, str(port)]).stdout.strip()
    assert from_broker == "open"
    # nftables drops the SYN: the connection times out instead of being refused.
    assert from_producer in ("TimeoutError", "timeout"), from_producer
    # AMQP itself stays open to everyone.
    assert cluster.producer.run(["python3", "-c", PORT_PROBE, target, "5672"]).stdout.strip() == "open"


# --- faults under load ------------------------------------------------------------------------------


class Load:
    """``cluster_load.py`` running inside the producer host; outcomes are read from its JSON lines."""

    def __init__(self, cluster: Cluster, scenario: str, count: int) -> None:
        self.cluster = cluster
        self.scenario = scenario
        self.count = count
        self.out = f"/root/load-{scenario}.jsonl"
        self.stop_file = f"/root/load-{scenario}.stop"
        self.stdout = cluster.tmp / f"load-{scenario}.out"
        #: What the fault saw, for the tally's notes (e.g. whose connections the victim held).
        self.notes: dict[str, object] = {}
        self.started = time.monotonic()
        with open(self.stdout, "wb") as output:
            self.process = cluster.producer.popen(
                [
                    "python3", LOAD_IN_HOST, "--count", str(count), "--rate", str(RATE),
                    "--concurrency", str(CONCURRENCY), "--timeout", str(REQUEST_TIMEOUT),
                    "--prefix", scenario, "--out", self.out, "--stop-file", self.stop_file,
                ],
                stdout=output,
            )

    def outcomes(self) -> list[dict[str, object]]:
        path = self.cluster.producer.rootdir / self.out.lstrip("/")
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_done(self, at_least: int, timeout: float = 300) -> None:
        """Wait until ``at_least`` requests have an outcome (answered or failed)."""
        wait_until(lambda: len(self.outcomes()) >= at_least, timeout, f"{at_least} outcomes of {self.scenario}", 0.5)

    def stop(self) -> None:
        """Hand out no more ids; the ones in flight still finish."""
        self.cluster.producer.write_file(self.stop_file, "")

    def finish(self) -> int:
        """Wait for the load to end and return how many ids it handed out."""
        self.process.wait(timeout=self.count / RATE + REQUEST_TIMEOUT + 120)
        self.seconds = time.monotonic() - self.started
        text = self.stdout.read_text()
        sent = [int(line.split()[1]) for line in text.splitlines() if line.startswith("sent ")]
        assert self.process.returncode == 0 and sent, text
        return sent[0]


def handler_runs(cluster: Cluster, scenario: str, hosts: list[Host] | None = None) -> dict[str, list[bool]]:
    """Every handler run of this scenario's ids on the consumer hosts: id -> redelivered flags.

    Read from each host's root copy, so a host that lost power still counts what it handled.
    """
    runs: dict[str, list[bool]] = collections.defaultdict(list)
    for host in cluster.consumers if hosts is None else hosts:
        path = host.rootdir / HANDLED_LOG.lstrip("/")
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            fields = line.split(" ")
            if len(fields) == 3 and fields[0].startswith(f"{scenario}-") and fields[1] in ("0", "1"):
                runs[fields[0]].append(fields[1] == "1")
    return runs


def error_code(record: dict[str, object]) -> str:
    """The ``error`` field of a failed request's JSON body (``unavailable``, ``busy``, ``timeout``...)."""
    try:
        return str(json.loads(str(record.get("body", "")))["error"])
    except (ValueError, KeyError, TypeError):
        return "?"


def read_dead_letters(cluster: Cluster) -> dict[str, str]:
    """The dead-letter queue by correlation id, read through a running broker from outside as the
    operators' user (credentials in memory only: the parameters' repr names no password)."""
    parameters = pika.ConnectionParameters(
        host=cluster.running_broker().address, virtual_host=VHOST, connection_attempts=3, socket_timeout=10,
        credentials=pika.PlainCredentials(OPERATOR_USER, str(cluster.site_vars["burrow_operator_rabbitmq_password"])),
    )
    return dead_letters(parameters, DEAD_LETTER_QUEUE)


def tally(cluster: Cluster, load: Load, run: ScenarioRun, planned: bool) -> dict[str, object]:
    """Count by id from the caller's side, explain each non-answer, check the handler runs, save
    and return the tally.

    ``planned`` (a rolling restart or upgrade): no request may fail, not even with 503/504.
    """
    scenario = load.scenario
    sent = load.finish()
    listed = load.outcomes()
    # Each request's outcome, kept beside the session's other files for a look after the hosts are gone.
    (cluster.tmp / f"load-{scenario}.jsonl").write_text(
        "".join(json.dumps(outcome) + "\n" for outcome in listed), encoding="utf-8"
    )
    expected_ids = {f"{scenario}-{n:06d}" for n in range(1, sent + 1)}
    reasons = collections.Counter(
        f"{record.get('status')} {error_code(record)}" for record in listed
        if str(record["id"]) in expected_ids and record.get("status") in (503, 504)
    )
    runs = handler_runs(cluster, scenario)
    ran = {request_id.encode() for request_id in runs}
    outcomes, explained = explain_outcomes(
        load_outcomes(listed, expected_ids, REQUEST_TIMEOUT), ran,
        cluster.producer.journal_json("burrow-producer.service"), lambda: read_dead_letters(cluster))
    counts = caller_counts(outcomes)
    duplicates = sum(len(flags) - 1 for flags in runs.values() if len(flags) > 1)
    # Only the first run of an id may lack the redelivery flag.
    unexplained = sum(max(0, flags.count(False) - 1) for flags in runs.values())
    never_handled = sorted(outcome.body.decode() for outcome in outcomes
                           if outcome.result == "answered" and outcome.body not in ran)
    failed = [record for record in explained["non_answers"] if record["result"] in ("lost", "refused")]
    result: dict[str, object] = {
        "allow_errors": not planned,
        "sent": sent,
        **counts,
        "duplicates_explained": duplicates - unexplained,
        "duplicates_unexplained": unexplained,
        "duration_s": round(load.seconds, 1),
        "handler_runs": sum(len(flags) for flags in runs.values()),
        "answered_without_handler_run": len(never_handled),
        "rate_per_s": RATE,
        "request_timeout_s": REQUEST_TIMEOUT,
        "load_average": os.getloadavg()[0],
        "notes": {**load.notes, **{f"failed {reason}": count for reason, count in sorted(reasons.items())},
                  **{f"explained {kind}": count for kind, count in explained["explained"].items()
                     if kind not in ("lost", "refused")}},
        "outage_windows": explained["outage_windows"],
        "non_answers": explained["non_answers"],
    }
    failures = {"lost": counts["lost"], "refused": counts["refused"], "duplicates_unexplained": unexplained,
                "answered_without_handler_run": len(never_handled)}
    if planned:
        failures.update(failed_503=counts["failed_503"], failed_504=counts["failed_504"])
    bad = {name: value for name, value in failures.items() if value}
    examples = [(record["id"], record["why"]) for record in failed[:3]]
    run.save(result, f"{bad}; e.g. {examples}" if bad else None)
    logger.info("tally %s: %s", scenario, {key: value for key, value in result.items() if key != "non_answers"})
    assert never_handled == [], f"answered but never handled: {never_handled[:5]}"
    assert result["lost"] == 0 and result["refused"] == 0, f"lost or refused: {bad}, e.g. {examples}"
    assert result["duplicates_unexplained"] == 0, {k: v for k, v in runs.items() if v.count(False) > 1}
    if planned:
        assert counts["failed_503"] == 0 and counts["failed_504"] == 0, f"a planned restart failed requests: {bad}"
    return result


def settle(cluster: Cluster) -> None:
    """Before and after each scenario: every node running, every daemon active."""
    wait_until(lambda: everything_up(cluster), 300, "the cluster and the daemons to settle", interval=3)


def nodeid_command(request: pytest.FixtureRequest) -> str:
    return f"make test-cluster PYTEST_ARGS='{request.node.nodeid}'"


def run_scenario(
    cluster: Cluster,
    request: pytest.FixtureRequest,
    scenario: str,
    count: int,
    fault: Callable[[Load], None],
    *,
    planned: bool = False,
) -> dict[str, object]:
    """Settle, run ``fault`` under a load of at most ``count`` requests, and count; the test's
    docstring is the tally's title. The run is declared first, so that a scenario that fails
    before counting still writes its tally (tests/support/verdicts.py ends it)."""
    title = " ".join((request.node.function.__doc__ or scenario).split())
    run = ScenarioRun(f"cluster-{scenario}", title, nodeid_command(request))
    request.node.reliability_run = run
    settle(cluster)
    load = Load(cluster, scenario, count)
    run.partial = lambda: {"allow_errors": not planned, "sent": len(load.outcomes()), **caller_counts(load_outcomes(
        load.outcomes(), {str(record["id"]) for record in load.outcomes()}, REQUEST_TIMEOUT))}
    try:
        fault(load)
    finally:
        load.stop()
    return tally(cluster, load, run, planned)


KEEP_DOWN = "/run/systemd/system/rabbitmq-server.service.d/50-test-keep-down.conf"


def test_sigkill_of_the_request_queue_leader(cluster: Cluster, request: pytest.FixtureRequest) -> None:
    """The leading node dies (SIGKILL, Debian's Restart= switched off), stays down, comes back."""

    def fault(load: Load) -> None:
        load.wait_done(100)
        victim = queue_leader(cluster)
        logger.info("killing %s, the leader of %s", victim.name, REQUEST_QUEUE)
        victim.write_file(KEEP_DOWN, "[Service]\nRestart=no\n")
        victim.systemctl("daemon-reload")
        # The node is beam.smp, the main process (its port programs die with it). Signalling the
        # whole control group fails inside nspawn ("Input/output error") after killing the main one.
        victim.systemctl("kill", "--kill-who=main", "--signal=SIGKILL", "rabbitmq-server.service")
        load.wait_done(len(load.outcomes()) + 250)
        assert victim.systemctl("is-active", "rabbitmq-server.service", check=False).stdout.strip() != "active"
        # The two other nodes elected a leader among themselves and serve meanwhile.
        assert queue_leader(cluster) is not victim
        victim.run(["rm", KEEP_DOWN])
        victim.systemctl("daemon-reload")
        victim.systemctl("start", "rabbitmq-server.service", "--no-block")
        settle(cluster)
        load.wait_done(len(load.outcomes()) + 100)

    tally_ = run_scenario(cluster, request, "leader-sigkill", 6000, fault)
    assert tally_["answered"] > 0


def sees_majority(broker: Host, others: list[Host]) -> bool:
    """True while ``broker`` answers and still counts the other brokers as running."""
    try:
        running = running_nodes(broker)
    except subprocess.SubprocessError:
        return False
    return all(f"rabbit@{other.name}" in running for other in others)


def connections_by_user(broker: Host) -> dict[str, int] | str:
    """The client connections on ``broker``'s own node, by user (the daemons connect as theirs), for
    a note: what the query said instead when it failed."""
    # list_connections lists the whole cluster's and has no node column on RabbitMQ 4.0; ``host`` is
    # the address the client connected to (a name only with reverse DNS lookups on).
    result = broker.run(["rabbitmqctl", "--quiet", "list_connections", "user", "host", "--formatter", "json"],
                        check=False, timeout=60)
    try:
        listed = json.loads(result.stdout)
        return dict(collections.Counter(str(entry["user"]) for entry in listed
                                        if entry["host"] in (broker.address, broker.name)))
    except (ValueError, KeyError, TypeError):
        return "unknown: " + " ".join((result.stdout + result.stderr).split())[-200:]


def declared_down(observer: Host, victim: Host) -> bool:
    """True once ``observer`` no longer lists the victim's node as running.

    While Erlang still waits for the cut-off node (up to net_ticktime, 60 s), ``cluster_status`` can
    hang on it: a query that times out counts as "not yet".
    """
    try:
        return f"rabbit@{victim.name}" not in running_nodes(observer)
    except subprocess.SubprocessError:
        return False


def test_broker_cut_off_then_healed(cluster: Cluster, request: pytest.FixtureRequest) -> None:
    """The request queue leader's link goes down (no FIN, no RST) until the other brokers declare it
    gone (> heartbeat 5 s, > net_ticktime 60 s) and it pauses itself, then comes back."""

    def fault(load: Load) -> None:
        load.wait_done(100)
        victim = queue_leader(cluster)
        # Only requests on their way to a consumer connected to the cut-off node can end in 504.
        load.notes.update(victim=victim.name, victim_connections=connections_by_user(victim))
        victim.set_link(up=False)
        try:
            others = [broker for broker in cluster.brokers if broker is not victim]
            wait_until(lambda: declared_down(others[0], victim), 240, f"{victim.name} declared down", 2)
            # pause_minority: the cut-off node stops serving by itself.
            wait_until(lambda: not sees_majority(victim, others), 60, f"{victim.name} to notice it is alone", 2)
            load.wait_done(len(load.outcomes()) + 100)
        finally:
            victim.set_link(up=True)
        settle(cluster)
        load.wait_done(len(load.outcomes()) + 100)

    tally_ = run_scenario(cluster, request, "broker-cut-off", 6000, fault)
    assert tally_["answered"] > 0


def test_rolling_restart_fails_no_request(cluster: Cluster, request: pytest.FixtureRequest) -> None:
    """``ansible-playbook rolling-restart.yml`` while the load runs: no request may fail at all."""
    outcome: dict[str, subprocess.CompletedProcess[str]] = {}

    def fault(load: Load) -> None:
        load.wait_done(50)
        outcome["run"] = run_playbook(
            cluster.inventory, cluster.tmp, playbook=ROLLING_RESTART, timeout=PLAYBOOK_TIMEOUT
        )
        load.wait_done(len(load.outcomes()) + 30)
        load.stop()

    run_scenario(cluster, request, "rolling-restart", 6000, fault, planned=True)
    result = outcome["run"]
    assert result.returncode == 0, result.stdout[-15000:] + result.stderr[-3000:]


def repackaged_deb(original: Path, tmp: Path, version_suffix: str) -> Path:
    """The same package with a higher version (``0.1.0`` -> ``0.1.0+<suffix>``), as an upgrade ships it."""
    unpacked = tmp / "deb-unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-R", str(original), str(unpacked)], check=True)
    control = unpacked / "DEBIAN" / "control"
    lines = control.read_text().splitlines()
    version = next(line.split(": ", 1)[1] for line in lines if line.startswith("Version: "))
    architecture = next(line.split(": ", 1)[1] for line in lines if line.startswith("Architecture: "))
    new_version = f"{version}+{version_suffix}"
    control.write_text("\n".join(f"Version: {new_version}" if line.startswith("Version: ") else line
                                 for line in lines) + "\n")
    target = tmp / f"burrow_{new_version}_{architecture}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(unpacked), str(target)], check=True,
                   capture_output=True)
    return target


def test_rolling_upgrade_of_the_consumers_fails_no_request(cluster: Cluster, request: pytest.FixtureRequest) -> None:
    """A newer .deb rolled out to the consumer hosts (half of them at a time) under load."""
    upgrade = repackaged_deb(cluster.deb, cluster.tmp, "upgrade1")
    outcome: dict[str, subprocess.CompletedProcess[str]] = {}

    def fault(load: Load) -> None:
        load.wait_done(50)
        outcome["run"] = run_playbook(
            cluster.inventory,
            cluster.tmp,
            "--limit",
            "consumers",
            "-e",
            f"burrow_common_deb_path={upgrade}",
            timeout=PLAYBOOK_TIMEOUT,
        )
        load.wait_done(len(load.outcomes()) + 30)
        load.stop()

    run_scenario(cluster, request, "consumer-upgrade", 6000, fault, planned=True)
    result = outcome["run"]
    assert result.returncode == 0, result.stdout[-15000:] + result.stderr[-3000:]
    for host in cluster.consumers:
        installed = host.run(["dpkg-query", "-W", "-f", "${Version}", "burrow"]).stdout
        assert installed.endswith("+upgrade1"), (host.name, installed)
    # The deployment ships the new package from now on (the apt module refuses a downgrade).
    cluster.deb = upgrade
    cluster.site_vars["burrow_common_deb_path"] = str(upgrade)


def test_consumer_host_power_cut(cluster: Cluster, request: pytest.FixtureRequest) -> None:
    """consumer2 loses power mid-load with requests in its handlers; they are redelivered to
    consumer1 (flagged) once the broker misses consumer2's heartbeats, and answered."""
    victim = cluster.consumers[1]
    scenario = "consumer-power-cut"
    held: list[str] = []

    def fault(load: Load) -> None:
        load.wait_done(150)

        def victim_holds_requests() -> bool:
            answered = {str(outcome["id"]) for outcome in load.outcomes()}
            held[:] = [rid for rid in handler_runs(cluster, scenario, [victim]) if rid not in answered]
            return len(held) >= 2

        # Seen from outside: requests consumer2's handler recorded whose callers have no answer yet.
        wait_until(victim_holds_requests, 60, "consumer2 to hold requests in its handlers", 0.05)
        victim.power_cut()
        load.wait_done(len(load.outcomes()) + 300)

    tally_ = run_scenario(cluster, request, scenario, 6000, fault)
    assert tally_["answered"] > 0
    # A request still in consumer2's handler at the cut (its answer can have left a moment before)
    # ran again on consumer1 with the redelivered flag.
    reruns = handler_runs(cluster, scenario, [cluster.consumers[0]])
    assert any(True in reruns.get(rid, []) for rid in held), (held, {rid: reruns.get(rid) for rid in held})


def test_on_rabbitmq_4_0_the_failovers_reopened_no_connection_for_a_stale_leader(cluster: Cluster) -> None:
    """The scenarios above lost leaders and brokers on RabbitMQ 4.0 with the 3.10 workaround off
    (rabbitmq-server PR 9241): every daemon said so on each connect, and none reopened a connection
    for an unconfirmed or nacked publish. consumer2 lost its power (and its journal) above."""
    units = {cluster.producer: ["burrow-producer.service"], cluster.consumers[0]: consumer_units(cluster.consumers[0])}
    for host, names in units.items():
        for unit in names:
            journal = host.journal(unit)
            assert "(RabbitMQ 4.0." in journal and "stale quorum leader workaround off)" in journal, journal[-2000:]
            assert "stale quorum leader workaround on)" not in journal
            assert "reopening the connection" not in journal, (host.name, unit)


def test_a_fourth_broker_in_the_inventory_grows_the_cluster(
    cluster: Cluster, ssh_key: SSHKey, request: pytest.FixtureRequest
) -> None:
    """broker4 added to the brokers group; rerunning site.yml joins it and grows the quorum queues.

    consumer2 lost its power in the previous scenario and stays out of this run (``--limit``).
    """
    root = ensure_root(DEPLOY_PACKAGES)
    with Host("broker4", root, ssh_key=ssh_key, network=cluster.network) as broker4:
        for host in [*cluster.brokers, cluster.producer, cluster.consumers[0], broker4]:
            host.update_hosts_file()
        broker4.wait_for_ssh()
        inventory = write_inventory(
            cluster.tmp / "inventory-4.yml",
            {"brokers": [*cluster.brokers, broker4], "producers": [cluster.producer], "consumers": cluster.consumers},
            cluster.site_vars,
        )
        result = run_playbook(inventory, cluster.tmp, "--limit", "all:!consumer2", timeout=PLAYBOOK_TIMEOUT)
        assert result.returncode == 0, result.stdout[-15000:] + result.stderr[-3000:]
        expected = sorted(f"rabbit@{name}" for name in (*BROKERS, "broker4"))
        assert running_nodes(cluster.brokers[0]) == expected
        assert running_nodes(broker4) == expected
        members = quorum_members(broker4)
        assert sorted(str(member["Node Name"]) for member in members) == expected
        config = cluster.producer.run(["cat", "/etc/burrow/producer.toml"]).stdout
        assert 'hosts = ["broker1", "broker2", "broker3", "broker4"]' in config
