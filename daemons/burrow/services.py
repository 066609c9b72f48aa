"""Named services: what a consumer daemon serves and where a producer sends each request.

A service is a name, a handler and its limits. Each has its own durable request queue bound to the
request exchange under the service's name: ``<topology.request_queue>.<name>`` with routing key
``<name>``. The *default* service is the one burrow always had: the queue ``topology.request_queue``
bound under its own name, served by ``[consumer] handler``, reached with ``service=None``; so a
deployment of an earlier release keeps its queue, its bindings and its requests.

In the consumer's file::

    [consumer.services.resize]
    handler = "images.handlers:resize"   # required: module:function
    concurrency = 8                       # optional; 0 or absent means [consumer] concurrency
    prefetch = 0                          # optional; 0 means 4 x concurrency

A daemon serves every ``[consumer.services.<name>]`` and, when ``[consumer] handler`` is written
in the file (or no service is), the default service too. ``[consumer.services.default]`` is the
default service written as a table; it and ``[consumer] handler`` are the same thing, so a file may
set only one of them.

Names are at most :data:`MAX_NAME_LENGTH` lowercase letters, digits, ``-`` and ``_``, starting with a
letter or digit: they become queue names, routing keys, broker permission regexes and metric labels,
so nothing in them may need quoting in any of those (no ``.``, which also keeps a service's routing
key from ever equalling the default service's).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

from burrow.errors import ConfigError

#: The name of the service on ``topology.request_queue`` (``service=None`` on the producer).
DEFAULT_SERVICE = "default"
MAX_NAME_LENGTH = 64
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_KEYS = ("handler", "concurrency", "prefetch")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """One service a consumer serves: ``concurrency``/``prefetch`` 0 take ``[consumer]``'s values."""

    name: str
    handler: str
    concurrency: int = 0
    prefetch: int = 0

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_SERVICE


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a service, or None when it can."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long; at most {MAX_NAME_LENGTH}"
    if not _NAME.fullmatch(name):
        return "may hold only lowercase letters, digits, '-' and '_', starting with a letter or digit"
    return None


def check_name(name: str) -> str:
    """Return ``name`` if it can name a service; else raise ``ValueError`` saying why."""
    problem = name_problem(name)
    if problem:
        raise ValueError(f"service name {name!r} {problem}")
    return name


def queue_name(request_queue: str, service: str | None) -> str:
    """The request queue of ``service`` (``None`` or ``"default"``: ``request_queue`` itself)."""
    if service is None or service == DEFAULT_SERVICE:
        return request_queue
    return f"{request_queue}.{service}"


def routing_key(request_queue: str, service: str | None) -> str:
    """The routing key that reaches ``service``'s queue through the request exchange."""
    if service is None or service == DEFAULT_SERVICE:
        return request_queue
    return service


def http_target(service: str | None) -> str:
    """The producer API's path for requests to ``service``: ``/v1/requests`` for the default one."""
    if service is None or service == DEFAULT_SERVICE:
        return "/v1/requests"
    return f"/v1/services/{service}"


def service_argument(text: str) -> str:
    """argparse type of ``--service NAME``: a valid service name."""
    try:
        return check_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _integer(path: str, key: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(path, key, f"expected an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(path, key, f"must be {minimum} or more, got {value!r}")
    return value


def _service(path: str, name: str, table: Any) -> ServiceConfig:
    prefix = f"consumer.services.{name}"
    problem = name_problem(name)
    if problem:
        raise ConfigError(path, prefix, f"service name {problem}")
    if not isinstance(table, dict):
        raise ConfigError(path, prefix, "expected a table with at least handler = \"module:function\"")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ConfigError(path, f"{prefix}.{unknown[0]}", f"unknown key (known keys: {', '.join(_KEYS)})")
    handler = table.get("handler")
    if handler is None:
        raise ConfigError(path, f"{prefix}.handler", "is required (\"module:function\")")
    module, sep, attr = handler.partition(":") if isinstance(handler, str) else ("", "", "")
    if not (sep and module and attr):
        raise ConfigError(path, f"{prefix}.handler", f"must look like 'module:function', got {handler!r}")
    return ServiceConfig(
        name,
        handler,
        concurrency=_integer(path, f"{prefix}.concurrency", table.get("concurrency", 0), 0),
        prefetch=_integer(path, f"{prefix}.prefetch", table.get("prefetch", 0), 0),
    )


def parse_services(path: str, consumer_table: dict[str, Any], handler: str) -> tuple[ServiceConfig, ...]:
    """The services of a ``[consumer]`` table (module docstring), in file order; ``handler`` is
    ``[consumer] handler`` as parsed. Raises :class:`ConfigError` naming the key at fault."""
    tables = consumer_table.get("services", {})
    if not isinstance(tables, dict):
        raise ConfigError(path, "consumer.services", "expected tables: [consumer.services.<name>]")
    services = [_service(path, name, table) for name, table in tables.items()]
    if not services:
        return ()
    if "handler" in consumer_table:
        if DEFAULT_SERVICE in tables:
            raise ConfigError(path, "consumer.services.default",
                              "the default service is set twice: here and by [consumer] handler; keep one")
        services.insert(0, ServiceConfig(DEFAULT_SERVICE, handler))
    return tuple(services)


def served(consumer: Any) -> tuple[ServiceConfig, ...]:
    """The services a consumer with settings ``consumer`` (a ``ConsumerConfig``) serves, with
    ``concurrency`` and ``prefetch`` as configured (0: from ``[consumer]``)."""
    return consumer.services or (ServiceConfig(DEFAULT_SERVICE, consumer.handler),)


def services_toml(services: tuple[ServiceConfig, ...]) -> list[str]:
    """TOML lines that :func:`parse_services` reads back as ``services``."""
    lines: list[str] = []
    for service in services:
        lines.append(f"[consumer.services.{service.name}]")
        for item in dataclasses.fields(service):
            if item.name != "name":
                value = getattr(service, item.name)
                lines.append(f"{item.name} = {json.dumps(value)}")
        lines.append("")
    return lines
