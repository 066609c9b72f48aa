"""Writing a :class:`BurrowConfig` back as TOML that :func:`burrow.config.load_config` reads as the
same config (demo, tests and benchmarks write their daemons' files with it)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from burrow.config.rules import RULE, Between, entry_section, is_section
from burrow.config.schema import BurrowConfig


def toml_value(value: Any, octal: bool = False) -> str:
    """``value`` (bool, int, float, str or a tuple of them) as a TOML value; strings are escaped so
    that any character, control characters included, reads back unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return oct(value) if octal and value >= 0 else str(value)
    if isinstance(value, float):
        return repr(value)  # TOML writes inf, -inf and nan as Python does
    if isinstance(value, str):
        escaped = "".join(f"\\u{ord(char):04x}" if char in '"\\' or ord(char) < 0x20 or ord(char) == 0x7F else char
                          for char in value)
        return f'"{escaped}"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _skipped(name: str, key: str, obj: Any) -> bool:
    """Keys left out: a password read from password_file, an empty password_file, whichever
    of ``host`` and ``hosts`` is not in use (the loader refuses both together), and the consumer's
    ``handler`` beside named services (the default service is then one of them, if served)."""
    if name == "consumer":
        return key == "handler" and bool(obj.services)
    if name != "rabbitmq":
        return False
    return ((key == "password" and bool(obj.password_file)) or (key == "password_file" and not obj.password_file)
            or key == ("host" if obj.hosts else "hosts"))


def to_toml(config: BurrowConfig) -> str:
    """Write ``config`` back as a TOML document that :func:`load_config` reads as the same config.

    The password is written only when it did not come from ``password_file``; callers writing the
    result to disk must give the file owner-only permissions.
    """
    lines: list[str] = []

    def section(name: str, obj: Any) -> None:
        lines.append(f"[{name}]")
        hints = typing.get_type_hints(type(obj))
        nested = []
        for item in dataclasses.fields(obj):
            value = getattr(obj, item.name)
            if is_section(hints[item.name]):
                nested.append((f"{name}.{item.name}", value))
            elif entry_section(hints[item.name]) is not None:
                nested.extend((f"{name}.{item.name}.{entry}", table) for entry, table in value.items())
            elif not _skipped(name, item.name, obj):
                rule = item.metadata.get(RULE)
                lines.append(f"{item.name} = {toml_value(value, isinstance(rule, Between) and rule.octal)}")
        lines.append("")
        for nested_name, nested_obj in nested:
            section(nested_name, nested_obj)

    hints = typing.get_type_hints(BurrowConfig)
    for item in dataclasses.fields(config):
        if is_section(hints[item.name]):
            section(item.name, getattr(config, item.name))
    return "\n".join(lines)
