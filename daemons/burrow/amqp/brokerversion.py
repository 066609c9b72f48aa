"""Which broker a connection reached, from the version RabbitMQ sends when the connection opens.

``RabbitMQSetup`` asks :func:`needs_stale_leader_workaround` once per connection whether to arm its
reopen-the-connection workaround for RabbitMQ 3.10's stale quorum queue leaders (see
``burrow.amqp.setup``): the bug was fixed by rabbitmq-server pull request 9241 in 3.13 and backported
to late 3.11.x and 3.12.x patch releases, so the workaround stays on before 3.13 (it is harmless on
the fixed 3.11/3.12 patches) and off from 3.13 on, RabbitMQ 4.0 included.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: The first RabbitMQ version whose channels look a quorum queue's leader up afresh.
FIXED_IN = (3, 13)

_VERSION = re.compile(r"(\d+)\.(\d+)")


def broker_version(server_properties: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """(major, minor) of the ``version`` property of the broker's Connection.Start, or None when
    it is missing or not a version (pika hands long strings over as bytes)."""
    value = (server_properties or {}).get("version")
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    match = _VERSION.match(value) if isinstance(value, str) else None
    return (int(match[1]), int(match[2])) if match else None


def needs_stale_leader_workaround(server_properties: Mapping[str, Any] | None) -> bool:
    """True when the broker may keep a channel bound to a dead quorum queue leader: a version before
    :data:`FIXED_IN`, or one that cannot be read (the workaround only costs a reconnect)."""
    version = broker_version(server_properties)
    return version is None or version < FIXED_IN


def describe_broker(server_properties: Mapping[str, Any] | None) -> str:
    """"RabbitMQ 4.0.5" (product and version as the broker names them), for the connect log line."""
    words = []
    for key in ("product", "version"):
        value = (server_properties or {}).get(key, "?")
        words.append(value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value))
    return " ".join(words)
