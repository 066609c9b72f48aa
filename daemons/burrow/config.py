"""burrow's typed configuration: one frozen object per TOML file, built once and passed in.

``load_config(path)`` reads the file, checks every section, key, type and value, resolves
``password_file`` and returns a :class:`BurrowConfig`. Any problem raises :class:`ConfigError` whose
message names the file, the key and what is wrong, so ``burrow check-config`` can print one line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import string
import tomllib
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from burrow.errors import ConfigError
from burrow.services import ServiceConfig, parse_services, services_toml

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """TLS towards the broker; ``verify`` checks the broker's certificate and host name."""

    enabled: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_hostname: str = ""
    verify: bool = True


@dataclass(frozen=True, slots=True)
class BrokerNode:
    """One broker node's AMQP endpoint; ``str()`` is ``host:port`` (IPv6 in brackets)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?")


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
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} must be a TCP port between 1 and 65535")
    return BrokerNode(host, int(port_text))


@dataclass(frozen=True, slots=True)
class RabbitMQConfig:
    """How to reach and log in to the broker. The password never appears in ``repr()``.

    ``host`` names the one node of a single broker; ``hosts`` lists every node of a cluster (the
    clients pick one at random and fail over to the others). :meth:`nodes` gives either as a list.
    """

    host: str = "localhost"
    hosts: tuple[str, ...] = ()
    port: int = 5672
    virtual_host: str = "/"
    username: str = "guest"
    password: str = field(default="", repr=False)
    password_file: str = ""
    heartbeat: int = 30
    connection_attempts: int = 1
    socket_timeout: float = 10.0
    blocked_connection_timeout: float = 60.0
    reconnect_initial_delay: float = 0.5
    reconnect_max_delay: float = 30.0
    connection_name: str = ""
    tls: TLSConfig = field(default_factory=TLSConfig)

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> "RabbitMQConfig":
        """Build a config from an ``amqp://user:pass@host:port/vhost`` URL (tests, ``AMQP_URL``)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError(f"not an AMQP URL: scheme {parts.scheme!r}")
        vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        values: dict[str, Any] = {
            "host": parts.hostname or "localhost",
            "port": parts.port or (5671 if parts.scheme == "amqps" else 5672),
            "virtual_host": vhost,
            "username": urllib.parse.unquote(parts.username or "guest"),
            "password": urllib.parse.unquote(parts.password or "guest"),
        }
        if parts.scheme == "amqps":
            values["tls"] = TLSConfig(enabled=True)
        values.update(overrides)
        return cls(**values)

    def nodes(self) -> tuple[BrokerNode, ...]:
        """Every node to connect to: the ``hosts`` entries, or ``host`` alone; ports default to ``port``."""
        if not self.hosts:
            return (BrokerNode(self.host, self.port),)
        return tuple(parse_node(entry, self.port) for entry in self.hosts)


@dataclass(frozen=True, slots=True)
class TopologyConfig:
    """Names and arguments of the exchanges and queues both sides declare."""

    request_exchange: str = "burrow.x.requests"
    request_queue: str = "burrow.requests"
    queue_type: str = "quorum"
    delivery_limit: int = 5
    reply_exchange: str = "burrow.x.replies"
    reply_queue_prefix: str = "burrow.replies"
    reply_queue_type: str = "quorum"
    reply_queue_expires: int = 3600
    dead_letter_exchange: str = "burrow.x.dead"
    dead_letter_queue: str = "burrow.dead"
    dead_letter_notice_queue: str = "burrow.dead.notices"

    @classmethod
    def prefixed(cls, prefix: str, **overrides: Any) -> "TopologyConfig":
        """The default layout under another name prefix (``<prefix>.x.requests``, ...), so that
        several independent systems (tests, benchmarks) can share one broker."""
        names = {
            "request_exchange": f"{prefix}.x.requests",
            "request_queue": f"{prefix}.requests",
            "reply_exchange": f"{prefix}.x.replies",
            "reply_queue_prefix": f"{prefix}.replies",
            "dead_letter_exchange": f"{prefix}.x.dead",
            "dead_letter_queue": f"{prefix}.dead",
            "dead_letter_notice_queue": f"{prefix}.dead.notices",
        }
        return cls(**{**names, **overrides})


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """The producer library's and daemon's settings."""

    instance_id: str = ""
    reply_mode: str = "queue"
    request_timeout: float = 30.0
    max_in_flight: int = 1024
    max_message_bytes: int = 1048576
    shutdown_timeout: float = 30.0
    socket: str = "/run/burrow/producer.sock"
    socket_mode: int = 0o660
    unavailable_wait: float = 5.0

    def resolved_instance_id(self) -> str:
        """The reply queue's stable suffix: ``instance_id`` or, by default, this host's name."""
        return self.instance_id or socket.gethostname()


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """The consumer daemon's settings."""

    handler: str = "burrow.handlers:echo"
    concurrency: int = 8
    prefetch: int = 0
    max_message_bytes: int = 1048576
    content_types: tuple[str, ...] = ("application/octet-stream", "text/plain", "application/json")
    include_traceback: bool = False
    shutdown_timeout: float = 30.0
    dead_letter_notices: bool = True
    #: ``[consumer.services.<name>]`` tables, parsed by :mod:`burrow.services`; empty: the default service.
    services: tuple[ServiceConfig, ...] = ()

    def effective_prefetch(self, concurrency: int) -> int:
        """Unacked requests to hold with ``concurrency`` workers (the live count after a reload):
        ``prefetch`` or, when 0, :func:`default_prefetch`."""
        return self.prefetch or default_prefetch(concurrency)


#: Requests the consumer holds per worker when ``consumer.prefetch`` is 0 (Celery's default
#: prefetch multiplier too). Benchmarked in benchmarks/RESULTS.md: with 8 workers, 2 per worker
#: reached 54-57 % of pika's RPC ceiling and 4 per worker 72 %, because bigger batches of
#: deliveries, confirms and acks cost less CPU per request. More per worker would add little on
#: one consumer and, with several, leave a burst's last requests queued behind slow handlers on
#: one consumer while another idles.
PREFETCH_PER_WORKER = 4


def default_prefetch(concurrency: int) -> int:
    """The request window of a consumer with ``concurrency`` workers and ``prefetch = 0``."""
    return PREFETCH_PER_WORKER * concurrency


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "INFO"


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9419


@dataclass(frozen=True, slots=True)
class BurrowConfig:
    """One daemon's whole configuration; ``path`` is the file it came from (or ``<defaults>``)."""

    rabbitmq: RabbitMQConfig = field(default_factory=RabbitMQConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    producer: ProducerConfig = field(default_factory=ProducerConfig)
    consumer: ConsumerConfig = field(default_factory=ConsumerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    path: str = "<defaults>"


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else "must be a TCP port between 1 and 65535"


def _one_of(*choices: str) -> typing.Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(repr(c) for c in choices)}"

    return check


def _not_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def _handler_spec(value: str) -> str | None:
    module, sep, attr = value.partition(":")
    return None if sep and module and attr else "must look like 'module:function'"


def _level(value: str) -> str | None:
    return None if value.upper() in LOG_LEVELS else f"must be one of {', '.join(LOG_LEVELS)}"


_CHECKS: dict[str, typing.Callable[[Any], str | None]] = {
    "rabbitmq.host": _not_empty,
    "rabbitmq.port": _port,
    "rabbitmq.username": _not_empty,
    "rabbitmq.heartbeat": _non_negative,
    "rabbitmq.connection_attempts": _positive,
    "rabbitmq.socket_timeout": _positive,
    "rabbitmq.blocked_connection_timeout": _positive,
    "rabbitmq.reconnect_initial_delay": _positive,
    "rabbitmq.reconnect_max_delay": _positive,
    "topology.request_exchange": _not_empty,
    "topology.request_queue": _not_empty,
    "topology.queue_type": _one_of("quorum", "classic"),
    "topology.delivery_limit": _positive,
    "topology.reply_exchange": _not_empty,
    "topology.reply_queue_prefix": _not_empty,
    "topology.reply_queue_type": _one_of("quorum", "classic"),
    "topology.reply_queue_expires": _positive,
    "topology.dead_letter_exchange": _not_empty,
    "topology.dead_letter_queue": _not_empty,
    "topology.dead_letter_notice_queue": _not_empty,
    "producer.reply_mode": _one_of("queue", "direct"),
    "producer.request_timeout": _positive,
    "producer.max_in_flight": _positive,
    "producer.max_message_bytes": _positive,
    "producer.shutdown_timeout": _non_negative,
    "producer.socket": _not_empty,
    "producer.unavailable_wait": _non_negative,
    "consumer.handler": _handler_spec,
    "consumer.concurrency": _positive,
    "consumer.prefetch": _non_negative,
    "consumer.max_message_bytes": _positive,
    "consumer.shutdown_timeout": _non_negative,
    "logging.level": _level,
    "metrics.port": _port,
}

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}" if not isinstance(value, dict) else "a table"


def _convert(path: str, key: str, expected: Any, value: Any) -> Any:
    """Check ``value`` against the field type ``expected``; return it in the field's own type."""
    if expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif expected is str:
        if isinstance(value, str):
            return value
    elif typing.get_origin(expected) is tuple:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ConfigError(path, key, f"expected an array of strings, got {_describe(value)}")
    else:  # pragma: no cover - a new field type without a converter is a programming error
        raise TypeError(f"no converter for {expected!r}")
    raise ConfigError(path, key, f"expected {_TYPE_NAMES[expected]}, got {_describe(value)}")


def _build(path: str, prefix: str, cls: type, table: Any) -> Any:
    """Turn one TOML table into the dataclass ``cls``, rejecting unknown keys and wrong types."""
    if not isinstance(table, dict):
        raise ConfigError(path, prefix, f"expected a table, got {_describe(table)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key}"
        if key not in known:
            raise ConfigError(path, dotted, f"unknown key (known keys: {', '.join(sorted(known))})")
        expected = hints[key]
        if dataclasses.is_dataclass(expected):
            values[key] = _build(path, dotted, expected, value)
            continue
        converted = _convert(path, dotted, expected, value)
        check = _CHECKS.get(dotted)
        problem = check(converted) if check else None
        if problem:
            raise ConfigError(path, dotted, f"{problem}, got {converted!r}")
        values[key] = converted
    return cls(**values)


def _expand(path: str, key: str, value: str) -> str:
    """Expand ``${VAR}`` (e.g. ``${CREDENTIALS_DIRECTORY}``) from the environment, strictly."""
    try:
        return string.Template(value).substitute(os.environ)
    except KeyError as exc:
        raise ConfigError(path, key, f"environment variable {exc.args[0]} is not set") from None
    except ValueError as exc:
        raise ConfigError(path, key, f"bad ${{...}} reference: {exc}") from None


def _resolve_password(path: str, rabbitmq: RabbitMQConfig, raw: dict[str, Any], read_secrets: bool) -> RabbitMQConfig:
    """Enforce "``password`` or ``password_file``, not both" and read the file's first line.

    Without ``read_secrets`` the file is neither expanded nor read: ``password_file`` stays as
    written, so a file can be checked where the secret is absent (``burrow check-config``).
    """
    has_password = "password" in raw
    if has_password and rabbitmq.password_file:
        raise ConfigError(path, "rabbitmq.password_file", "set either password or password_file, not both")
    if not rabbitmq.password_file:
        return rabbitmq if has_password else dataclasses.replace(rabbitmq, password="guest")
    if not read_secrets:
        return rabbitmq
    secret_path = _expand(path, "rabbitmq.password_file", rabbitmq.password_file)
    try:
        secret = Path(secret_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "rabbitmq.password_file", f"{secret_path} does not exist") from None
    except PermissionError:
        raise ConfigError(path, "rabbitmq.password_file", f"{secret_path} is not readable by this user") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "rabbitmq.password_file", f"cannot read {secret_path}: {exc}") from None
    secret = secret.rstrip("\r\n")
    if not secret:
        raise ConfigError(path, "rabbitmq.password_file", f"{secret_path} is empty")
    return dataclasses.replace(rabbitmq, password=secret, password_file=secret_path)


def _check_hosts(path: str, rabbitmq: RabbitMQConfig, raw: dict[str, Any]) -> None:
    """Enforce "``host`` or ``hosts``, not both" and check every ``hosts`` entry."""
    if "hosts" not in raw:
        return
    if "host" in raw:
        raise ConfigError(path, "rabbitmq.hosts",
                          "set either rabbitmq.host (one node) or rabbitmq.hosts (every node of a cluster), not both")
    if not rabbitmq.hosts:
        raise ConfigError(path, "rabbitmq.hosts", "must list at least one node")
    seen: set[BrokerNode] = set()
    for entry in rabbitmq.hosts:
        try:
            node = parse_node(entry, rabbitmq.port)
        except ValueError as exc:
            raise ConfigError(path, "rabbitmq.hosts", f"entry {entry!r}: {exc}") from None
        if node in seen:
            raise ConfigError(path, "rabbitmq.hosts", f"entry {entry!r}: lists node {node} twice")
        seen.add(node)


def parse_config(data: dict[str, Any], path: str = "<string>", *, read_secrets: bool = True) -> BurrowConfig:
    """Validate an already-parsed TOML document and build the config from it.

    ``read_secrets=False`` checks everything but leaves ``password_file`` unread (and the password
    empty): such a config is for inspection, not for connecting.
    """
    sections = {f.name: f for f in dataclasses.fields(BurrowConfig) if f.name != "path"}
    hints = typing.get_type_hints(BurrowConfig)
    built: dict[str, Any] = {}
    for name, table in data.items():
        if name not in sections:
            raise ConfigError(path, name, f"unknown section (known sections: {', '.join(sorted(sections))})")
        if name == "consumer" and isinstance(table, dict):
            table = {key: value for key, value in table.items() if key != "services"}
        built[name] = _build(path, name, hints[name], table)
    if isinstance(data.get("consumer"), dict):
        consumer = built["consumer"]
        services = parse_services(path, data["consumer"], consumer.handler)
        handler = next((service.handler for service in services if service.is_default), consumer.handler)
        built["consumer"] = dataclasses.replace(consumer, services=services, handler=handler)
    rabbitmq = built.get("rabbitmq", RabbitMQConfig())
    built["rabbitmq"] = _resolve_password(path, rabbitmq, data.get("rabbitmq", {}), read_secrets)
    _check_hosts(path, built["rabbitmq"], data.get("rabbitmq", {}))
    tls = built["rabbitmq"].tls
    if tls.enabled and bool(tls.cert_file) != bool(tls.key_file):
        raise ConfigError(path, "rabbitmq.tls", "cert_file and key_file go together")
    for key in ("ca_file", "cert_file", "key_file"):
        file_name = getattr(tls, key)
        if tls.enabled and file_name and not os.access(file_name, os.R_OK):
            raise ConfigError(path, f"rabbitmq.tls.{key}", f"{file_name} does not exist or is not readable")
    return BurrowConfig(**built, path=path)


def load_config(path: str | os.PathLike[str], *, read_secrets: bool = True) -> BurrowConfig:
    """Read and validate the TOML file at ``path``; raise :class:`ConfigError` naming what is wrong.

    ``read_secrets=False``: see :func:`parse_config`.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(name, None, "file does not exist") from None
    except PermissionError:
        raise ConfigError(name, None, "file is not readable by this user") from None
    except IsADirectoryError:
        raise ConfigError(name, None, "is a directory, not a file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, None, f"not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(name, None, f"cannot read: {exc.strerror}") from None
    return parse_config(data, name, read_secrets=read_secrets)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def to_toml(config: BurrowConfig) -> str:
    """Write ``config`` back as a TOML document that :func:`load_config` reads as the same config.

    The password is written only when it did not come from ``password_file``; callers writing the
    result to disk must give the file owner-only permissions.
    """
    lines: list[str] = []

    def section(name: str, obj: Any) -> None:
        lines.append(f"[{name}]")
        nested = []
        for item in dataclasses.fields(obj):
            value = getattr(obj, item.name)
            if dataclasses.is_dataclass(value):
                nested.append((f"{name}.{item.name}", value))
            elif name == "rabbitmq" and item.name == "password" and obj.password_file:
                continue
            elif name == "rabbitmq" and item.name == "password_file" and not value:
                continue
            elif name == "rabbitmq" and item.name == ("host" if obj.hosts else "hosts"):
                continue
            elif name == "consumer" and (item.name == "services" or (item.name == "handler" and obj.services)):
                continue  # the services, default one included, follow as their own tables
            else:
                lines.append(f"{item.name} = {_toml_value(value)}")
        lines.append("")
        for nested_name, nested_obj in nested:
            section(nested_name, nested_obj)
        if name == "consumer":
            lines.extend(services_toml(obj.services))

    for item in dataclasses.fields(config):
        if item.name != "path":
            section(item.name, getattr(config, item.name))
    return "\n".join(lines)


__all__ = [
    "BrokerNode",
    "BurrowConfig",
    "ConsumerConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ProducerConfig",
    "RabbitMQConfig",
    "TLSConfig",
    "TopologyConfig",
    "load_config",
    "parse_config",
    "parse_node",
    "to_toml",
]
