"""Reading a TOML file into a :class:`BurrowConfig`: every section, key, type and rule checked.

``load_config(path)`` parses the file, :func:`build` turns each table into its section's dataclass
(unknown keys, wrong types and values their rule refuses raise :class:`ConfigError` naming the
key), the sections' cross-key checks run, the password is resolved (:mod:`burrow.config.secrets`)
and the TLS files are looked at. The first problem found is raised; the daemon exits with it and
``burrow check-config`` prints it as one line.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from typing import Any

from burrow.config.rules import RULE, Between, Rule, checks_of, entry_section, is_section
from burrow.config.schema import BurrowConfig, RabbitMQConfig
from burrow.config.secrets import resolve_password
from burrow.errors import ConfigError

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
_KINDS = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}


def describe(value: Any) -> str:
    """A TOML value as an error message shows it: its TOML type and its value (not a table's)."""
    if isinstance(value, dict):
        return "a table"
    return f"{_KINDS.get(type(value), type(value).__name__)} {value!r}"


def _typed(path: str, key: str, expected: Any, rule: Rule | None, value: Any) -> Any:
    """Check ``value`` against the field type ``expected``; return it unconverted (an integer stays
    an integer so that its bounds are checked exactly, however large). A wrong type's error also
    states the range of a numeric key."""
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif expected is str:
        ok = isinstance(value, str)
    elif typing.get_origin(expected) is tuple:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ConfigError(path, key, f"expected an array of strings, got {describe(value)}")
    else:
        raise TypeError(f"{key}: the loader has no branch for the field type {expected!r}")
    if not ok:
        allowed = f"; must be between {rule.bounds(' and ')}" if isinstance(rule, Between) else ""
        raise ConfigError(path, key, f"expected {_TYPE_NAMES[expected]}, got {describe(value)}{allowed}")
    return value


def build(path: str, prefix: str, cls: type, table: Any) -> Any:
    """Turn one TOML table into the section ``cls``: unknown keys, wrong types, values their rule
    refuses and the section's cross-key checks each raise :class:`ConfigError` naming the key."""
    if not isinstance(table, dict):
        raise ConfigError(path, prefix, f"expected a table, got {describe(table)}")
    hints = typing.get_type_hints(cls)
    known = {item.name: item for item in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key}"
        if key not in known:
            raise ConfigError(path, dotted, f"unknown key (known keys: {', '.join(known)})")
        expected = hints[key]
        if is_section(expected):
            values[key] = build(path, dotted, expected, value)
            continue
        rule = known[key].metadata[RULE]
        entry = entry_section(expected)
        if entry is not None:
            values[key] = _named_tables(path, dotted, entry, rule, value)
            continue
        value = _typed(path, dotted, expected, rule, value)
        problem = rule.problem(value) if rule is not None else None
        if problem:
            raise ConfigError(path, dotted, problem)
        values[key] = float(value) if expected is float else value
    built = cls(**values)
    _run_checks(path, prefix, built, frozenset(table))
    return built


def _named_tables(path: str, prefix: str, entry: type, names: Rule, tables: Any) -> dict[str, Any]:
    """``[prefix.<name>]`` tables into ``{name: entry section}``, each name checked by ``names``."""
    if not isinstance(tables, dict):
        raise ConfigError(path, prefix, f"expected tables [{prefix}.<name>], got {describe(tables)}")
    built: dict[str, Any] = {}
    for name, table in tables.items():
        problem = names.problem(name)
        if problem:
            raise ConfigError(path, f"{prefix}.{name}", f"the name {problem}")
        built[name] = build(path, f"{prefix}.{name}", entry, table)
    return built


def _run_checks(path: str, prefix: str, built: Any, written: frozenset[str]) -> None:
    for check in checks_of(type(built)):
        found = check.verify(built, written)
        if found:
            key, problem = found
            raise ConfigError(path, f"{prefix}.{key}", problem)


def _check_tls_files(path: str, rabbitmq: RabbitMQConfig) -> None:
    """With TLS on, the CA, certificate and key files named must be readable now, not at connect."""
    tls = rabbitmq.tls
    if not tls.enabled:
        return
    for key in ("ca_file", "cert_file", "key_file"):
        file_name = getattr(tls, key)
        if file_name and not os.access(file_name, os.R_OK):
            raise ConfigError(path, f"rabbitmq.tls.{key}", f"{file_name} does not exist or is not readable")


def parse_config(data: dict[str, Any], path: str = "<string>", *, read_secrets: bool = True) -> BurrowConfig:
    """Validate an already-parsed TOML document and build the config from it.

    ``read_secrets=False`` checks everything but leaves ``password_file`` unread (and the password
    empty): such a config is for inspection, not for connecting.
    """
    hints = typing.get_type_hints(BurrowConfig)
    sections = {item.name for item in dataclasses.fields(BurrowConfig) if is_section(hints[item.name])}
    built: dict[str, Any] = {}
    for name, table in data.items():
        if name not in sections:
            raise ConfigError(path, name, f"unknown section (known sections: {', '.join(sorted(sections))})")
        built[name] = build(path, name, hints[name], table)
    for name in sections - set(built):
        built[name] = build(path, name, hints[name], {})
    rabbitmq_table = data.get("rabbitmq", {})
    built["rabbitmq"] = resolve_password(path, built["rabbitmq"], frozenset(rabbitmq_table), read_secrets)
    _check_tls_files(path, built["rabbitmq"])
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
