"""Can this machine reach the broker? One bounded attempt, one line when it cannot.

``burrow call`` runs :func:`probe` before it starts a producer, so that an unreachable broker is
reported within the call's timeout as a single line saying what was tried and why it failed (name
not found, connection refused, no answer, TLS failure), instead of the producer's reconnect loop
and pika's log lines. The probe stops after the TCP connect (and the TLS handshake when
``rabbitmq.tls.enabled``): the AMQP login itself is left to the producer, whose first failure
reason the caller reports if the session does not open either.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from burrow.amqp.parameters import connection_parameters, default_connection_name
from burrow.config import BrokerNode, RabbitMQConfig
from burrow.producer import Producer

logger = logging.getLogger(__name__)


class Unreachable(Exception):
    """No broker address could be reached; ``str()`` is the one line to show the operator."""


@dataclass(frozen=True, slots=True)
class Reached:
    """The address the probe connected to and how (``tls`` when the handshake passed)."""

    host: str
    port: int
    address: str
    tls: bool


def _resolve(host: str, port: int, timeout: float) -> list[tuple[int, int, int, str, tuple]]:  # type: ignore[type-arg]
    """``getaddrinfo`` bounded by ``timeout`` (the resolver has no timeout of its own).

    The lookup runs in a daemon thread; one still blocked at the deadline is abandoned, not joined.
    """
    outcome: dict[str, object] = {}
    done = threading.Event()

    def lookup() -> None:
        try:
            outcome["addresses"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=lookup, name="burrow-resolve", daemon=True).start()
    if not done.wait(timeout):
        raise Unreachable(f"name lookup of {host} gave no answer within {timeout:g} s")
    error = outcome.get("error")
    if isinstance(error, socket.gaierror):
        reason = "name not found" if error.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) else "name lookup failed"
        raise Unreachable(f"{reason}: {host} ({error.strerror})")
    if isinstance(error, OSError):
        raise Unreachable(f"name lookup of {host} failed: {error}")
    return outcome["addresses"]  # type: ignore[return-value]


def _why(exc: OSError, seconds: float) -> str:
    """A short reason for a failed connect or handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS failure: certificate not accepted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failure: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer within {seconds:g} s"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    return exc.strerror or str(exc)


def probe(rabbitmq: RabbitMQConfig, timeout: float) -> Reached:
    """Connect to a broker node's address (and shake hands over TLS when configured) within ``timeout``.

    Tries the nodes of ``rabbitmq.nodes()`` in order and returns the first address that worked;
    raises :class:`Unreachable` whose message names each node, every address tried and why each
    failed.
    """
    deadline = time.monotonic() + timeout
    failures: list[str] = []
    for node in rabbitmq.nodes():
        try:
            return _probe_node(rabbitmq, node, deadline, timeout)
        except Unreachable as exc:
            failures.append(str(exc))
    raise Unreachable("; ".join(failures))


def _probe_node(rabbitmq: RabbitMQConfig, node: BrokerNode, deadline: float, timeout: float) -> Reached:
    host, port = node.host, node.port
    target = f"{host}:{port}" + (" (TLS)" if rabbitmq.tls.enabled else "")
    try:
        addresses = _resolve(host, port, max(0.001, deadline - time.monotonic()))
    except Unreachable as exc:
        raise Unreachable(f"cannot reach the broker at {target}: {exc}") from None
    ssl_options = connection_parameters(rabbitmq, default_connection_name("call"), node).ssl_options
    failures: list[str] = []
    for family, kind, proto, _name, sockaddr in addresses:
        address = f"[{sockaddr[0]}]:{sockaddr[1]}" if family == socket.AF_INET6 else f"{sockaddr[0]}:{sockaddr[1]}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            failures.append(f"{address}: not tried, {timeout:g} s used up")
            continue
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(remaining)
            sock.connect(sockaddr)
            if ssl_options is not None:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                with ssl_options.context.wrap_socket(sock, server_hostname=ssl_options.server_hostname):
                    pass
            logger.debug("Broker %s reachable at %s", target, address)
            return Reached(host, port, address, ssl_options is not None)
        except OSError as exc:
            failures.append(f"{address}: {_why(exc, remaining)}")
        finally:
            sock.close()
    if len(failures) == 1 and failures[0].startswith(f"{host}:{port}: "):
        failures = [failures[0][len(f"{host}:{port}: "):]]  # the address is the host itself: say it once
    raise Unreachable(f"cannot reach the broker at {target}: " + "; ".join(failures))


class _FirstFailure(logging.Handler):
    """Keeps the first connection failure the AMQP layer logs, without printing it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reason = ""
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if not self.seen.is_set():
            # "Call: cannot connect to ...; retrying in 0.3s (attempt 1)" -> "cannot connect to ..."
            self.reason = re.sub(r"^\w+: |; retrying in .*$", "", record.getMessage())
            self.seen.set()


def connect(producer: Producer, rabbitmq: RabbitMQConfig, timeout: float, *, show_logs: bool) -> Reached:
    """:func:`probe` the broker, then start ``producer`` and wait for its AMQP session, all within
    ``timeout`` seconds; raise :class:`Unreachable` with one line otherwise.

    Once the probe got through to the only node, the failure is above TCP (login refused, virtual
    host or permission missing, topology refused): the producer's first reconnect warning is that
    reason, and it ends the wait at once, since retrying would only repeat it. With several nodes
    the producer may first pick one the probe did not reach, so it gets until ``timeout`` to fail
    over, and the first failure is named if it never connects. While waiting, those warnings are held
    back from the log unless ``show_logs``.
    """
    deadline = time.monotonic() + timeout
    reached = probe(rabbitmq, timeout)
    one_node = len(rabbitmq.nodes()) == 1
    amqp_logger = logging.getLogger("burrow.amqp")
    capture = _FirstFailure()
    saved = amqp_logger.propagate, amqp_logger.level
    amqp_logger.addHandler(capture)
    if not show_logs:
        amqp_logger.propagate = False
        amqp_logger.setLevel(logging.WARNING)
    try:
        producer.start()
        while not producer.wait_ready(min(0.05, max(0.0, deadline - time.monotonic()))):
            if capture.seen.is_set() and one_node:
                raise Unreachable(f"reached the broker at {reached.address}, but the AMQP session did not "
                                  f"open: {capture.reason}")
            if time.monotonic() >= deadline:
                first = f" (first failure: {capture.reason})" if capture.seen.is_set() else ""
                raise Unreachable(f"reached the broker at {reached.address}, but the AMQP session did not "
                                  f"open within {timeout:g} s{first}")
    finally:
        amqp_logger.removeHandler(capture)
        amqp_logger.propagate = saved[0]
        amqp_logger.setLevel(saved[1])
    return reached
