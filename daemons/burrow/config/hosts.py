"""Broker node addresses: ``rabbitmq.host`` and the entries of ``rabbitmq.hosts``.

:func:`parse_node` turns one entry into a :class:`BrokerNode`; :func:`host_or_hosts` and
:func:`hosts_problem` are the ``[rabbitmq]`` section's cross-key checks (see
:class:`burrow.config.rules.Check`), run by the loader after each key passed its own rule.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class BrokerNode:
    """One broker node's AMQP endpoint; ``str()`` is ``host:port`` (IPv6 in brackets)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?")


def is_host(text: str) -> bool:
    """Whether ``text`` is a host name, an IPv4 address or a bare IPv6 address (``rabbitmq.host``)."""
    if _HOST_NAME.fullmatch(text):
        return True
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def parse_node(entry: str, default_port: int) -> BrokerNode:
    """Parse one ``rabbitmq.hosts`` entry: ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``.

    Raises ``ValueError`` saying what is wrong with the entry.
    """
    if entry.startswith("["):
        address, sep, rest = entry[1:].partition("]")
        if not sep:
            raise ValueError("an IPv6 address in brackets needs its closing ']'")
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise ValueError(f"{address!r} in brackets is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise ValueError("only ':port' may follow the ']'")
        host, port_text = address, rest[1:] if rest else None
    elif entry.count(":") > 1:
        raise ValueError("write an IPv6 address in brackets, e.g. '[fd00::3]:5672'")
    else:
        host, sep, port_text = entry.partition(":")
        if not sep:
            port_text = None
        if not _HOST_NAME.fullmatch(host):
            raise ValueError("the host must be a name or an address (letters, digits, '.', '-', '_')")
    if port_text is None:
        return BrokerNode(host, default_port)
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} must be a TCP port between 1 and 65535")
    return BrokerNode(host, int(port_text))


def host_or_hosts(rabbitmq: Any, written: frozenset[str]) -> tuple[str, str] | None:
    """``host`` (one node) or ``hosts`` (a cluster), never both."""
    if "host" in written and "hosts" in written:
        return "hosts", "set either rabbitmq.host (one node) or rabbitmq.hosts (every node of a cluster), not both"
    return None


def hosts_problem(rabbitmq: Any, written: frozenset[str]) -> tuple[str, str] | None:
    """Every ``hosts`` entry parses, with ``port`` as the default, and names a node once."""
    if "hosts" not in written:
        return None
    if not rabbitmq.hosts:
        return "hosts", "must list at least one node"
    seen: set[BrokerNode] = set()
    for entry in rabbitmq.hosts:
        try:
            node = parse_node(entry, rabbitmq.port)
        except ValueError as exc:
            return "hosts", f"entry {entry!r}: {exc}"
        if node in seen:
            return "hosts", f"entry {entry!r}: lists node {node} twice"
        seen.add(node)
    return None
