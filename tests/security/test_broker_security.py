"""TLS with peer verification, and guest refused beyond loopback, on a node of their own.

The node listens on 127.0.0.1 (plain and TLS, client certificates required) and on the host end
of a veth pair into a network namespace this module creates; ``guest`` keeps RabbitMQ's default of
loopback-only logins. Everything is torn down at the end of the module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path
from typing import Iterator

import pika
import pika.exceptions
import pytest

from burrow.amqp.parameters import connection_parameters
from burrow.config import BurrowConfig, ProducerConfig, RabbitMQConfig, TLSConfig, TopologyConfig
from burrow.consumer import Consumer
from burrow.tools.localbroker import LocalBroker, TLSListener, free_port
from burrow.producer import Producer

from waiting import wait_for
from pki import Pki, make_pki

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

#: The test's own point-to-point link: host end and namespace end of the veth pair.
HOST_ADDRESS, PEER_ADDRESS, PREFIX = "10.213.251.1", "10.213.251.2", 30


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@dataclasses.dataclass
class Namespace:
    name: str
    host_link: str


@pytest.fixture(scope="module")
def netns() -> Iterator[Namespace]:
    """A network namespace joined to the host by a veth pair with the test's own addresses."""
    addresses = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True, check=True).stdout
    if HOST_ADDRESS in addresses:
        pytest.fail(f"{HOST_ADDRESS} is already in use on this machine: {addresses}")
    tag = uuid.uuid4().hex[:6]
    space = Namespace(f"burrow-sec-{tag}", f"bsh{tag}")
    peer_link = f"bsn{tag}"
    ip("netns", "add", space.name)
    try:
        ip("link", "add", space.host_link, "type", "veth", "peer", "name", peer_link)
        ip("link", "set", peer_link, "netns", space.name)
        ip("addr", "add", f"{HOST_ADDRESS}/{PREFIX}", "dev", space.host_link)
        ip("link", "set", space.host_link, "up")
        ip("-n", space.name, "addr", "add", f"{PEER_ADDRESS}/{PREFIX}", "dev", peer_link)
        ip("-n", space.name, "link", "set", peer_link, "up")
        ip("-n", space.name, "link", "set", "lo", "up")
        yield space
    finally:
        subprocess.run(["ip", "link", "del", space.host_link], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", space.name], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    """The PKI, in a folder of its own: pytest's tmp folders are root-only, the node runs as rabbitmq."""
    folder = Path(tempfile.mkdtemp(prefix="burrow-pki-"))
    try:
        yield make_pki(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def node(netns: Namespace, pki: Pki) -> Iterator[LocalBroker]:
    extra_port = free_port()
    broker = LocalBroker(
        name=f"burrow-sec-{os.getpid()}",
        tls=TLSListener(str(pki.ca), str(pki.server_cert), str(pki.server_key)),
        extra_listeners=(f"{HOST_ADDRESS}:{extra_port}",),
        guest_loopback_only=True,
    )
    broker.extra_port = extra_port  # type: ignore[attr-defined]
    with broker:
        yield broker


def tls_config(node: LocalBroker, pki: Pki, **tls: object) -> RabbitMQConfig:
    settings = {"enabled": True, "ca_file": str(pki.ca), "cert_file": str(pki.client_cert),
                "key_file": str(pki.client_key), **tls}
    return RabbitMQConfig(host="127.0.0.1", port=node.tls_port, username="guest", password="guest",
                          socket_timeout=5.0, reconnect_initial_delay=0.2, reconnect_max_delay=1.0,
                          tls=TLSConfig(**settings))


def connect(config: RabbitMQConfig) -> pika.BlockingConnection:
    return pika.BlockingConnection(connection_parameters(config, "burrow-security-test"))


def test_round_trip_over_tls_with_verified_peers(node, pki):
    rabbitmq = tls_config(node, pki, server_hostname="localhost")
    suffix = uuid.uuid4().hex[:6]
    config = BurrowConfig(
        rabbitmq=rabbitmq,
        topology=TopologyConfig(request_exchange=f"tls.x.req.{suffix}", request_queue=f"tls.req.{suffix}",
                                reply_exchange=f"tls.x.rep.{suffix}", reply_queue_prefix=f"tls.rep.{suffix}",
                                dead_letter_exchange=f"tls.x.dead.{suffix}", dead_letter_queue=f"tls.dead.{suffix}"),
        producer=ProducerConfig(instance_id=f"tls-{suffix}"),
    )
    consumer = Consumer(config).start()
    producer = Producer(config).start()
    try:
        assert consumer.wait_ready(30) and producer.wait_ready(30)
        assert producer.call(b"over tls", timeout=10) == b"Consumer processed: over tls"
        listing = node.ctl("list_connections", "--quiet", "--no-table-headers", "ssl", "peer_cert_subject", "port").stdout
        rows = [line.split("\t") for line in listing.splitlines()]
        assert len(rows) == 3 and all(row[0] == "true" and "burrow-client" in row[1] for row in rows), listing
        assert all(row[2] == str(node.tls_port) for row in rows)
    finally:
        producer.stop(timeout=0)
        consumer.stop(timeout=5)


REFUSED = {
    # name: (TLS settings, who refuses, what it says: the node's log or the client's TLS error)
    "no client certificate": ({"cert_file": "", "key_file": ""}, "broker", "SERVER ALERT: Fatal - Certificate required"),
    "client certificate from another CA": (
        {"cert_file": "{other_client_cert}", "key_file": "{other_client_key}"}, "broker", "SERVER ALERT: Fatal - Unknown CA"),
    "broker certificate from an untrusted CA": ({"ca_file": "{other_ca}"}, "client", "CERTIFICATE_VERIFY_FAILED"),
    "host name mismatch": ({"server_hostname": "not-the-broker.example"}, "client", "Hostname mismatch"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_tls_refused(node, pki, case, caplog):
    settings, side, reason = REFUSED[case]
    paths = {field.name: str(getattr(pki, field.name)) for field in dataclasses.fields(pki)}
    tls = {key: value.format(**paths) for key, value in settings.items()}
    node_log = node.log_dir / f"{node.nodename}.log"
    alerts_before = node_log.read_text(errors="replace").count(reason)
    with pytest.raises((pika.exceptions.AMQPConnectionError, ssl.SSLError)) as refused:
        connect(tls_config(node, pki, **tls)).close()
    if side == "client":
        text = repr(refused.value) + caplog.text  # pika logs the TLS error it wraps
        assert reason in text, text
    else:
        wait_for(lambda: node_log.read_text(errors="replace").count(reason) > alerts_before, 10,
                 f"the node to log {reason!r}")
    # The daemon engine with the same settings never gets a channel, and keeps retrying quietly.
    producer = Producer(BurrowConfig(rabbitmq=tls_config(node, pki, **tls), producer=ProducerConfig(instance_id="refused")))
    producer.start()
    try:
        assert not producer.wait_ready(2)
    finally:
        producer.stop(timeout=0)


CLIENT = textwrap.dedent("""
    import json, sys
    import pika
    request = json.load(sys.stdin)
    parameters = pika.ConnectionParameters(request["host"], request["port"], "/",
        pika.PlainCredentials(request["user"], request["password"]), connection_attempts=1, socket_timeout=5)
    try:
        connection = pika.BlockingConnection(parameters)
    except (pika.exceptions.ProbableAccessDeniedError, pika.exceptions.ProbableAuthenticationError) as exc:
        print("REFUSED", exc)
    except Exception as exc:
        print("ERROR", type(exc).__name__, exc)
    else:
        peer = connection._impl._transport._sock.getsockname()[0]
        connection.close()
        print("OK", peer)
""")


def login_from_namespace(netns: Namespace, port: int, user: str, password: str) -> str:
    """Log in from inside the namespace (credentials on stdin, never in argv); return the outcome."""
    result = subprocess.run(["ip", "netns", "exec", netns.name, sys.executable, "-c", CLIENT],
                            input=json.dumps({"host": HOST_ADDRESS, "port": port, "user": user, "password": password}),
                            capture_output=True, text=True, timeout=60)
    return (result.stdout + result.stderr).strip()


def test_guest_cannot_log_in_over_a_non_loopback_address(node, netns):
    user, password = f"remote-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    node.ctl("add_user", user, password)
    node.ctl("set_permissions", "-p", "/", user, "^$", "^$", "^$")
    try:
        guest = login_from_namespace(netns, node.extra_port, "guest", "guest")
        assert guest.startswith("REFUSED"), guest
        node_log = lambda: (node.log_dir / f"{node.nodename}.log").read_text(errors="replace")  # noqa: E731
        wait_for(lambda: "can only connect via localhost" in node_log(), 10, "the node to log why guest was refused")
        # The same path works for a real user, so the refusal is about guest beyond loopback.
        other = login_from_namespace(netns, node.extra_port, user, password)
        assert other == f"OK {PEER_ADDRESS}", other
    finally:
        node.ctl("delete_user", user)
    # And guest still logs in over loopback, where RabbitMQ allows it.
    connection = pika.BlockingConnection(pika.URLParameters(node.amqp_url))
    connection.close()
