"""Erlang distribution between the brokers over TLS (the rabbitmq role's ``rabbitmq_inter_node_tls``).

On each Debian release (13: RabbitMQ 4.0.5 on Erlang 27; 12: 3.10.8 on Erlang 25), three booted
hosts on one bridge, all three in the inventory's ``brokers`` group (so the cluster firewall lets
each reach the others' epmd and 25672): ``tlsb1`` and ``tlsb2`` get
certificates from the test's CA, ``tlsx`` one from an unrelated CA, and all three the same Erlang
cookie. In order:

1. site.yml on tlsb1 and tlsb2 with inter-node TLS off: they form a cluster the plain way. A capture
   of port 25672 on tlsb1 meanwhile sees node names in the clear, and an Erlang node on tlsx with the
   cookie gets ``pong`` from rabbit@tlsb1: both checks below fail on this phase, as they must.
2. A quorum queue with a member on each broker gets messages (publisher confirms).
3. site.yml again with the setting on: the role switches both brokers together (a running cluster
   cannot switch one node at a time). Captured on tlsb1: every connection to 25672 opens with a TLS
   ClientHello, and no node name passes in the clear. Both nodes see each other over ``tls``, the
   CLI tools work, the queue kept its messages, new ones are confirmed by both members (a quorum of
   two), and every message is read through the follower's broker.
4. site.yml for tlsx with TLS on: its join of the cluster fails (its certificate is not trusted),
   and an Erlang node on tlsx, with the cookie, plain or over TLS with tlsx's certificate, gets
   ``pang``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pika
import pytest

from pki import make_node_pki  # tests/support

from .nspawn import Host, Network, SSHKey, ensure_root, wait_until, write_inventory
from .test_deploy import DEPLOY_PACKAGES, recap, run_playbook, task_results

logger = logging.getLogger(__name__)
logging.getLogger("pika").setLevel(logging.WARNING)

pytestmark = [pytest.mark.system, pytest.mark.timeout(1800)]

BROKERS = ("tlsb1", "tlsb2")
STRANGER = "tlsx"
VHOST = "tlscheck"
QUEUE = "tls.check"
USER = "tls-check"
DIST_PORT = 25672
BEFORE, AFTER = 20, 20

# Runs inside a host (Debian's python3): every TCP segment to or from port 25672 that carries data,
# on every interface (lo too: the CLI tools talk to their node there), as JSON lines, until the stop
# file appears or the time limit passes.
CAPTURE = r"""
import json, os, socket, struct, sys, time
out, stop, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
sock.settimeout(0.2)
deadline = time.monotonic() + limit
with open(out, "w") as sink:
    while time.monotonic() < deadline and not os.path.exists(stop):
        try:
            frame, (ifname, proto, pkttype, *_) = sock.recvfrom(65535)
        except socket.timeout:
            continue
        if proto != 0x0800 or (ifname == "lo" and pkttype == socket.PACKET_OUTGOING):
            continue
        ip = frame[14:]
        if len(ip) < 20 or ip[9] != 6:
            continue
        header, total = (ip[0] & 0x0F) * 4, struct.unpack("!H", ip[2:4])[0]
        tcp = ip[header:total]
        sport, dport = struct.unpack("!HH", tcp[:4])
        payload = tcp[(tcp[12] >> 4) * 4:]
        if payload and %(port)d in (sport, dport):
            sink.write(json.dumps({"src": socket.inet_ntoa(ip[12:16]), "dst": socket.inet_ntoa(ip[16:20]),
                                   "sport": sport, "dport": dport, "data": payload[:600].hex()}) + "\n")
            sink.flush()
""" % {"port": DIST_PORT}
CAPTURE_IN_HOST = "/root/capture-dist.py"
# An Erlang node name of one of the test's hosts (the plain handshake sends both sides' names).
NODE_NAME = re.compile(rb"[A-Za-z0-9_-]+@(tlsb1|tlsb2|tlsx)")


@dataclass
class Capture:
    """What one capture saw: a list of segments (src, dst, sport, dport, data)."""

    segments: list[dict[str, object]]

    def cleartext_names(self) -> set[str]:
        """Erlang node names that crossed port 25672 unencrypted."""
        return {m.group().decode() for s in self.segments for m in NODE_NAME.finditer(bytes.fromhex(str(s["data"])))}

    def client_hellos(self) -> list[dict[str, object]]:
        """Segments to 25672 that are a TLS handshake record holding a ClientHello."""
        hellos = []
        for segment in self.segments:
            data = bytes.fromhex(str(segment["data"]))
            if segment["dport"] == DIST_PORT and data[:2] == b"\x16\x03" and len(data) > 5 and data[5] == 1:
                hellos.append(segment)
        return hellos

    def from_first_tls(self) -> Capture:
        """The segments from the first ClientHello on: a capture across the switch holds the plain
        cluster's last words before it (its nodes are stopped first)."""
        hellos = self.client_hellos()
        return Capture(self.segments[self.segments.index(hellos[0]):] if hellos else [])

    def connection_openings(self) -> list[bytes]:
        """The first data each client sent on each connection to 25672."""
        first: dict[tuple[object, ...], bytes] = {}
        for segment in self.segments:
            if segment["dport"] == DIST_PORT:
                first.setdefault((segment["src"], segment["sport"], segment["dst"]), bytes.fromhex(str(segment["data"])))
        return list(first.values())


@contextlib.contextmanager
def capturing(host: Host, name: str, limit: float = 1500) -> Iterator[list[Capture]]:
    """Capture port 25672 on ``host`` while the block runs; the Capture is appended on exit."""
    out, stop = f"/root/{name}.jsonl", f"/root/{name}.stop"
    host.write_file(CAPTURE_IN_HOST, CAPTURE)
    process = host.popen(["python3", CAPTURE_IN_HOST, out, stop, str(limit)])
    wait_until(lambda: (host.rootdir / out.lstrip("/")).exists(), 30, f"the capture on {host.name} to start")
    result: list[Capture] = []
    try:
        yield result
    finally:
        host.write_file(stop, "")
        process.wait(timeout=30)
        text = (host.rootdir / out.lstrip("/")).read_text()
        result.append(Capture([json.loads(line) for line in text.splitlines() if line.strip()]))
        logger.info("capture %s on %s: %d segments", name, host.name, len(result[0].segments))


@dataclass
class Deployment:
    brokers: list[Host]
    stranger: Host
    tmp: Path
    inventory: Path
    cookie: str
    password: str
    runs: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    captures: dict[str, Capture] = field(default_factory=dict)
    probes: dict[str, str] = field(default_factory=dict)
    queue: dict[str, object] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def write_tls_inventory(path: Path, brokers: list[Host], stranger: Host, pki_dir: Path, tls: bool,
                        extra: dict[str, object]) -> Path:
    """The inventory of the three brokers, each with its own certificate and key (tlsx trusts both
    CAs, so that its own CLI accepts its own node; the cluster trusts only its CA). ``extra`` holds
    the variables of all hosts, and under "host" those set on each host."""
    files = make_node_pki(pki_dir, [host.name for host in brokers], [stranger.name]) \
        if not (pki_dir / "ca.pem").exists() else {
            host.name: (pki_dir / f"{host.name}.pem", pki_dir / f"{host.name}.key") for host in [*brokers, stranger]}
    bundle = pki_dir / "both-cas.pem"
    bundle.write_text((pki_dir / "ca.pem").read_text() + (pki_dir / "other-ca.pem").read_text())
    host_vars = dict(extra["host"])  # type: ignore[call-overload]
    group_vars = {key: value for key, value in extra.items() if key != "host"}
    write_inventory(path, {"brokers": [*brokers, stranger]}, {**group_vars, "rabbitmq_inter_node_tls": tls})
    document = json.loads(path.read_text())
    for host in [*brokers, stranger]:
        document["all"]["hosts"][host.name].update(host_vars)
        document["all"]["hosts"][host.name].update({
            "rabbitmq_inter_node_tls_cacert_src": str(bundle if host is stranger else pki_dir / "ca.pem"),
            "rabbitmq_inter_node_tls_cert_src": str(files[host.name][0]),
            "rabbitmq_inter_node_tls_key_src": str(files[host.name][1]),
        })
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def erl_ping(host: Host, cookie: str, target: str, tls_optfile: str | None = None) -> str:
    """``net_adm:ping`` of ``target`` from a throwaway Erlang node on ``host`` that has the cookie."""
    dist = ["-proto_dist", "inet_tls", "-ssl_dist_optfile", tls_optfile] if tls_optfile else []
    command = ["erl", "-sname", f"probe{secrets.token_hex(3)}", "-setcookie", cookie, "-noshell", *dist,
               "-eval", f"io:format(\"ping-result ~p~n\", [net_adm:ping('{target}')]), halt()."]
    output = host.run(command, timeout=60).stdout
    # The TLS handshake's failure is logged on the same output, before or after the result.
    return re.findall(r"^ping-result (\w+)$", output, re.MULTILINE)[-1]


def quorum_members(broker: Host) -> list[dict[str, object]]:
    result = broker.run(["rabbitmq-queues", "--quiet", "quorum_status", QUEUE, "--vhost", VHOST,
                         "--formatter", "json"], timeout=60)
    return json.loads(result.stdout)


def dist_protocol(broker: Host, peer: str) -> str:
    """The protocol of the distribution connection from ``broker``'s node to ``peer``'s (tcp or tls),
    asked through rabbitmqctl, which itself reaches the node through the same distribution."""
    expression = f"{{ok, Info}} = net_kernel:node_info('{peer}'), element(4, proplists:get_value(address, Info))."
    return broker.run(["rabbitmqctl", "--quiet", "eval", expression], timeout=60).stdout.strip()


def amqp(host: Host, password: str) -> pika.BlockingConnection:
    credentials = pika.PlainCredentials(USER, password)
    return pika.BlockingConnection(pika.ConnectionParameters(host.address, 5672, VHOST, credentials,
                                                             connection_attempts=10, retry_delay=2))


def publish(host: Host, password: str, bodies: list[str]) -> None:
    """Publish with confirms: a quorum queue of two members confirms once both have the message."""
    with contextlib.closing(amqp(host, password)) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        for body in bodies:
            channel.basic_publish("", QUEUE, body.encode(), pika.BasicProperties(delivery_mode=2), mandatory=True)


def read_all(host: Host, password: str) -> list[str]:
    with contextlib.closing(amqp(host, password)) as connection:
        channel = connection.channel()
        bodies = []
        while (message := channel.basic_get(QUEUE, auto_ack=True))[0] is not None:
            bodies.append(message[2].decode())
        return bodies


def playbook(deployment: Deployment, name: str, tls: bool, limit: str, extra: dict[str, object],
             pki_dir: Path) -> subprocess.CompletedProcess[str]:
    write_tls_inventory(deployment.inventory, deployment.brokers, deployment.stranger, pki_dir, tls, extra)
    started = time.monotonic()
    result = run_playbook(deployment.inventory, deployment.tmp, "--limit", limit, timeout=900)
    deployment.seconds[name] = time.monotonic() - started
    deployment.runs[name] = result
    return result


@pytest.fixture(scope="module")
def deployment(
    nspawn_root: Path, suite: str, ssh_key: SSHKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """The three hosts of ``suite`` (each Debian release: RabbitMQ 4.0 on Erlang 27, 3.10 on 25),
    taken through the four steps of the module's docstring."""
    root = ensure_root(DEPLOY_PACKAGES, suite)
    tmp = tmp_path_factory.mktemp(f"inter-node-tls-{suite}")
    pki_dir = tmp / "pki"
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(Network())
        hosts = [stack.enter_context(Host(name, root, ssh_key=ssh_key, network=network))
                 for name in (*BROKERS, STRANGER)]
        for host in hosts:
            host.update_hosts_file()
        for host in hosts:
            host.wait_for_ssh()
        brokers, stranger = hosts[:2], hosts[2]
        done = Deployment(brokers, stranger, tmp, tmp / "inventory.yml", secrets.token_urlsafe(32),
                          secrets.token_urlsafe(24))
        extra: dict[str, object] = {
            "rabbitmq_erlang_cookie": done.cookie,
            "burrow_common_rabbitmq_vhost": VHOST,
            "rabbitmq_apt_cache_valid_time": 10 * 365 * 86400,
            "rabbitmq_quorum_initial_group_size": len(BROKERS),
            "rabbitmq_prometheus_enabled": False,
            # Host variables: they win over the playbook's group_vars/brokers (burrow's users and policies).
            "host": {
                "rabbitmq_vhosts": [VHOST],
                "rabbitmq_users": [{"name": USER, "password": done.password, "permissions": [
                    {"vhost": VHOST, "configure_priv": ".*", "write_priv": ".*", "read_priv": ".*"}]}],
                "rabbitmq_policies": [],
            },
        }
        limit = ",".join(BROKERS)
        # 1. plain
        with capturing(brokers[0], "plain") as plain:
            result = playbook(done, "plain", False, limit, extra, pki_dir)
            assert result.returncode == 0, result.stdout[-12000:]
            done.probes["plain"] = erl_ping(stranger, done.cookie, "rabbit@tlsb1")
        done.captures["plain"] = plain[0]
        done.queue["plain protocol"] = dist_protocol(brokers[0], "rabbit@tlsb2")
        # 2. messages before the switch
        publish(brokers[0], done.password, [f"before-{n}" for n in range(BEFORE)])
        # 3. the switch
        with capturing(brokers[0], "tls") as tls:
            result = playbook(done, "tls", True, limit, extra, pki_dir)
            assert result.returncode == 0, result.stdout[-12000:]
        done.captures["tls"] = tls[0]
        # 4. the stranger, TLS on
        done.probes["tls, plain probe"] = erl_ping(stranger, done.cookie, "rabbit@tlsb1")
        with capturing(brokers[0], "stranger") as strange:
            playbook(done, "stranger", True, STRANGER, extra, pki_dir)
            done.probes["tls, probe with tlsx's certificate"] = erl_ping(
                stranger, done.cookie, "rabbit@tlsb1", "/etc/rabbitmq/inter_node_tls.config")
        done.captures["stranger"] = strange[0]
        logger.info("site.yml runs took %s s", {name: round(seconds) for name, seconds in done.seconds.items()})
        yield done


def test_plain_distribution_shows_names_in_the_clear_and_lets_a_cookie_holder_in(deployment: Deployment) -> None:
    """The checks below, on the phase before the switch: they must see what TLS then prevents."""
    capture = deployment.captures["plain"]
    assert {"rabbit@tlsb1", "rabbit@tlsb2"} <= capture.cleartext_names()
    assert capture.client_hellos() == []
    assert deployment.probes["plain"] == "pong"
    assert deployment.queue["plain protocol"] == "tcp"


def test_the_switch_restarts_both_brokers_together_onto_tls(deployment: Deployment) -> None:
    run = deployment.runs["tls"]
    # On tlsb1's turn, for both brokers; on tlsb2's there is nothing left to switch.
    assert task_results(run, "Stop every clustered broker before its distribution changes.").count("changed") == 2
    assert all(stats["failed"] == 0 for stats in recap(run).values())
    for broker, peer in zip(deployment.brokers, reversed(deployment.brokers)):
        assert dist_protocol(broker, f"rabbit@{peer.name}") == "tls"
        status = json.loads(broker.run(["rabbitmqctl", "--quiet", "cluster_status", "--formatter", "json"]).stdout)
        assert sorted(status["running_nodes"]) == ["rabbit@tlsb1", "rabbit@tlsb2"]
        env = broker.run(["cat", "/etc/rabbitmq/rabbitmq-env.conf"]).stdout
        assert 'CTL_ERL_ARGS="-proto_dist inet_tls -ssl_dist_optfile /etc/rabbitmq/inter_node_tls.config"' in env


def test_port_25672_carries_tls_only(deployment: Deployment) -> None:
    switch = deployment.captures["tls"]
    # Until the brokers are stopped for the switch, the same capture still sees names in the clear.
    assert "rabbit@tlsb1" in Capture(switch.segments[:len(switch.segments) - len(switch.from_first_tls().segments)]
                                     ).cleartext_names()
    for name, capture in (("tls", switch.from_first_tls()), ("stranger", deployment.captures["stranger"])):
        assert capture.cleartext_names() == set(), name
        openings = capture.connection_openings()
        assert capture.client_hellos(), f"{name}: no connection to {DIST_PORT} was opened"
        # Every connection starts with a TLS record (a new one with a ClientHello; one that was
        # already open when the capture began with application data: content type 20-23, version 3.x).
        assert all(len(data) > 5 and 20 <= data[0] <= 23 and data[1] == 3 for data in openings), (name, openings)
    # The brokers dialled each other, not only the CLI its node on loopback.
    peers = {deployment.brokers[0].address, deployment.brokers[1].address}
    assert any({s["src"], s["dst"]} == peers for s in deployment.captures["tls"].client_hellos())


def test_the_quorum_queue_syncs_over_tls_and_its_follower_serves_every_message(deployment: Deployment) -> None:
    """With two members a quorum queue confirms a message once both hold it, so confirms prove the
    replication over TLS; a consumer on the follower's broker, served by the leader over the same
    distribution, reads every message, from before the switch and after it. (No leader change: with two
    members, one stopped or drained leaves no majority to elect another; the 3-broker cluster
    scenarios cover leader changes.)"""
    first, second = deployment.brokers
    publish(second, deployment.password, [f"after-{n}" for n in range(AFTER)])

    members = quorum_members(first)
    assert sorted(str(m["Raft State"]) for m in members) == ["follower", "leader"]
    assert sorted(str(m["Node Name"]) for m in members) == ["rabbit@tlsb1", "rabbit@tlsb2"]
    follower = next(b for b in deployment.brokers if any(
        m["Node Name"] == f"rabbit@{b.name}" and m["Raft State"] == "follower" for m in members))
    assert read_all(follower, deployment.password) == (
        [f"before-{n}" for n in range(BEFORE)] + [f"after-{n}" for n in range(AFTER)])


def test_a_host_with_the_cookie_but_an_untrusted_certificate_cannot_join(deployment: Deployment) -> None:
    run = deployment.runs["stranger"]
    assert run.returncode != 0
    assert "failed" in task_results(run, "Join this broker to the cluster through rabbit@tlsb1.") \
        or "fatal" in task_results(run, "Join this broker to the cluster through rabbit@tlsb1."), run.stdout[-6000:]
    status = json.loads(deployment.brokers[0].run(
        ["rabbitmqctl", "--quiet", "cluster_status", "--formatter", "json"]).stdout)
    assert sorted(status["disk_nodes"]) == ["rabbit@tlsb1", "rabbit@tlsb2"]
    assert deployment.probes["tls, plain probe"] == "pang"
    assert deployment.probes["tls, probe with tlsx's certificate"] == "pang"
