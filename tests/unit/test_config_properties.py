"""Property: whatever value any key (or section) of the example configuration is given,
``load_config`` returns a config or raises :class:`ConfigError` naming that key; never another
exception. A config it returns is written back by ``to_toml`` and reads as the same config.

The keys come from the schema, so new keys are covered as they are added. Values are any TOML
value (booleans, integers of any size, floats with infinities and nan, strings with control
characters, arrays, tables), with numbers near each key's bounds drawn more often. In CI (the
``ci`` profile of tests/conftest.py: derandomized, no example database) each test below runs the
number of examples its ``settings`` names: 1,500 in all, 10-25 s on a busy 2-core machine.
"""

from __future__ import annotations

import copy
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from burrow.config import BurrowConfig, load_config, to_toml
from burrow.config.rules import Between, Key, OneOf, checks_of, sections, walk
from burrow.config.writing import toml_value
from burrow.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "daemons" / "burrow" / "examples" / "burrow.toml"
KEYS = list(walk(BurrowConfig))
SECTIONS = [name for name, _cls in sections(BurrowConfig)]
BASE = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
#: The name a test gives a table of named tables (``<name>`` in keys such as consumer.services.<name>.prefetch).
SAMPLE_NAME = "sample"
KEY_NAMES = st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=12)

scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**63), max_value=2**64),
    st.sampled_from([2**63, -(2**63) - 1, 10**400, -(10**400)]),  # past TOML's 64 bits; tomllib reads them
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(codec="utf-8"), max_size=40),
)
toml_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEY_NAMES, inner, max_size=3),
                           max_leaves=8)


def near_bounds(rule: Between) -> st.SearchStrategy[Any]:
    """Numbers at, just inside and just outside ``rule``'s ends, and anywhere in between."""
    ends = [rule.low, rule.high]
    return st.one_of(
        st.sampled_from([end + step for end in ends for step in (-1, 0, 1)]),
        st.sampled_from([float(end) + step for end in ends for step in (-0.0005, 0.0, 0.0005)]),
        st.integers(min_value=int(rule.low) - 2, max_value=int(rule.high) + 2),
        st.floats(min_value=rule.low - 1, max_value=rule.high + 1),
    )


def plausible(key: Key) -> st.SearchStrategy[Any]:
    """Values of the key's own type, near its bounds or among its choices, so that many load."""
    if isinstance(key.rule, Between):
        return near_bounds(key.rule)
    if isinstance(key.rule, OneOf):
        return st.sampled_from(key.rule.choices)
    return {bool: st.booleans(), str: st.text(max_size=20)}.get(key.kind, st.lists(st.text(max_size=20), max_size=3))


@st.composite
def key_and_value(draw: st.DrawFn) -> tuple[str, Any]:
    key = draw(st.sampled_from(KEYS))
    return key.dotted, draw(plausible(key) if draw(st.booleans()) else toml_values)


def encode(value: Any) -> str:
    """``value`` as TOML, inline tables included (the writer's scalars and arrays, keys quoted)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(key)} = {encode(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(encode(item) for item in value) + "]"
    return toml_value(value)


def concrete(dotted: str) -> str:
    """``dotted`` with the ``<name>`` of a table of named tables made a real name."""
    return dotted.replace("<name>", SAMPLE_NAME)


def entry_defaults(template: str) -> dict[str, Any]:
    """Every key of one named table (``template`` ends in ``<name>``) at its default, so that the
    entry is whole apart from the key a test sets."""
    return {key.dotted[len(template) + 1:]: key.default for key in KEYS
            if key.dotted.startswith(template + ".") and "." not in key.dotted[len(template) + 1:]}


def document(path: tuple[str, ...], value: Any) -> str:
    """The example with the key (or section) at ``path`` set to ``value``; nested tables inline.
    A named table on the way (``<name>`` in ``path``) is added with its keys at their defaults."""
    data = copy.deepcopy(BASE)
    table = data
    for depth, part in enumerate(path[:-1]):
        if concrete(part) not in table:
            table[concrete(part)] = entry_defaults(".".join(path[:depth + 1])) if part == "<name>" else {}
        table = table[concrete(part)]
    table[concrete(path[-1])] = value
    lines = [f"{toml_value(key)} = {encode(item)}" for key, item in data.items() if not isinstance(item, dict)]
    for name, section in data.items():
        if isinstance(section, dict):
            lines.append(f"[{toml_value(name)}]")
            lines.extend(f"{toml_value(key)} = {encode(item)}" for key, item in section.items())
    return "\n".join(lines) + "\n"


def related(dotted: str) -> set[str]:
    """Keys an error about ``dotted`` may name: itself, and the keys sharing a cross-key check with
    it or with a table it is in (a conflict between two keys is reported under one of them)."""
    names = {dotted}
    for section, cls in sections(BurrowConfig):
        for rule in checks_of(cls):
            keys = {concrete(f"{section}.{key}") for key in rule.keys}
            if any(dotted == key or dotted.startswith(key + ".") for key in keys):
                names |= keys
    return names


def outcome(text: str) -> BurrowConfig | ConfigError:
    with tempfile.NamedTemporaryFile("w", suffix=".toml", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        try:
            return load_config(handle.name)
        except ConfigError as exc:
            return exc


def check(template: str, text: str) -> None:
    """Loading ``text`` gives a config that survives ``to_toml``, or an error naming the key or
    section ``template`` (a key under it, or one a cross-key check ties to it)."""
    dotted = concrete(template)
    result = outcome(text)
    event("refused" if isinstance(result, ConfigError) else "loaded")
    if isinstance(result, ConfigError):
        assert result.key is not None and (result.key in related(dotted) or result.key.startswith(dotted + ".")), (
            f"{dotted}: error names {result.key}: {result}")
        return
    again = outcome(to_toml(result))
    assert not isinstance(again, ConfigError), f"{dotted}: to_toml wrote a file load_config refuses: {again}"
    assert again.rabbitmq == result.rabbitmq and again.producer == result.producer
    assert (again.topology, again.consumer, again.logging, again.metrics) == (
        result.topology, result.consumer, result.logging, result.metrics)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(key_and_value())
def test_any_value_of_any_key_loads_or_is_refused_naming_the_key(drawn):
    dotted, value = drawn
    check(dotted, document(tuple(dotted.split(".")), value))


@settings(max_examples=300)
@given(st.sampled_from(SECTIONS), toml_values)
def test_any_value_in_place_of_a_section_loads_or_is_refused_naming_it(section, value):
    check(section, document(tuple(section.split(".")), value))


@settings(max_examples=200)
@given(st.sampled_from(SECTIONS), KEY_NAMES, scalars)
def test_an_unknown_key_is_refused_naming_it(section, name, value):
    if any(key.dotted == f"{section}.{name}" for key in KEYS) or f"{section}.{name}" in SECTIONS:
        return
    result = outcome(document((*section.split("."), name), value))
    assert isinstance(result, ConfigError) and result.key == concrete(f"{section}.{name}"), result
