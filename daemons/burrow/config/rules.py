"""The rule kit of burrow's configuration: every key carries its own rule and its one-line meaning.

A section of the TOML file is a frozen dataclass decorated with :func:`section`. Each of its fields
is declared with :func:`setting` (a plain value, with the :class:`Rule` its values obey) or
:func:`table` (a nested section such as ``[rabbitmq.tls]``). Rules that relate several keys of one
section (``host`` or ``hosts``, never both) are :class:`Check` objects given to :func:`section`.

:func:`section` checks the class when its module is imported, so a mistake stops the package from
loading at all instead of silently dropping a rule: a field declared without :func:`setting`, a
numeric key without bounds, a default its own rule refuses, or a :class:`Check` naming a key the
section does not have each raise :class:`SchemaError`. The loader (:mod:`burrow.config.loading`),
the TOML writer and the documentation (:func:`walk`, used by the README's generated reference and
by the tests over every key) read the rules from the fields, so nothing names a key twice.

Adding keys or tables:

- A key: a field ``name: int = setting(8, Between(1, 64), "what it means")``. ``int`` and
  ``float`` keys must have :class:`Between` bounds; ``str``, ``bool`` and ``tuple[str, ...]`` keys
  may have any :class:`Rule` or none.
- A nested table (``[consumer.limits]``): a new ``@section`` dataclass, and in its parent a field
  ``limits: LimitsConfig = table(LimitsConfig, "what it holds")``. Loading, writing, the README
  reference and the property tests walk into it with no other change.
- A table of named tables (``[consumer.services.<name>]``): a ``@section`` dataclass for one entry
  and in its parent a field ``services: dict[str, ServiceConfig] = named_tables(ServiceConfig,
  rule, "what they are")``, ``rule`` checking each name; :func:`walk` lists the entry's keys under
  ``<name>``, and the loader and the writer iterate the names.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

RULE = "burrow.rule"
DOC = "burrow.doc"


class SchemaError(TypeError):
    """A section of the configuration schema is declared wrongly (raised at import time)."""


class Rule(Protocol):
    """What one key's values must be: :meth:`problem` says what is wrong with a value, or None."""

    def problem(self, value: Any) -> str | None: ...

    def describe(self) -> str:
        """The allowed values in a few words, for the README and the example's comments."""
        ...


def _number(value: float, octal: bool) -> str:
    if octal:
        return oct(int(value)) if value else "0"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class Between:
    """A finite number from ``low`` to ``high`` inclusive, in ``unit`` (``octal`` for file modes);
    ``what`` names the kind of number in the error ("a TCP port")."""

    low: float
    high: float
    unit: str = ""
    octal: bool = False
    what: str = ""

    def problem(self, value: float) -> str | None:
        finite = not isinstance(value, float) or math.isfinite(value)
        if finite and self.low <= value <= self.high:
            return None
        shown = oct(value) if self.octal and isinstance(value, int) else repr(value)
        what = f"{self.what} " if self.what else ""
        return f"must be {what}between {self.bounds(' and ')}, got {shown}"

    def bounds(self, joint: str) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{_number(self.low, self.octal)}{joint}{_number(self.high, self.octal)}{unit}"

    def describe(self) -> str:
        return self.bounds(" to ")


@dataclass(frozen=True)
class OneOf:
    """One of a few fixed strings (``fold_case`` accepts any letter case)."""

    choices: tuple[str, ...]
    fold_case: bool = False

    def problem(self, value: str) -> str | None:
        candidate = value.upper() if self.fold_case else value
        return None if candidate in self.choices else f"must be one of {self.describe()}, got {value!r}"

    def describe(self) -> str:
        return ", ".join(repr(choice) for choice in self.choices)


@dataclass(frozen=True)
class Text:
    """A string: ``empty`` allowed or not, at most ``max_bytes`` in UTF-8, never a NUL character
    (no name, path or AMQP field can hold one), optionally matching ``accept`` (explained by ``shape``)."""

    empty: bool = False
    max_bytes: int = 0
    accept: Callable[[str], bool] | None = None
    shape: str = ""

    def problem(self, value: str) -> str | None:
        if not value:
            return None if self.empty else "must not be empty"
        if "\0" in value:
            return f"must not contain a NUL character, got {value!r}"
        if self.max_bytes and len(value.encode("utf-8", "surrogatepass")) > self.max_bytes:
            return f"must be at most {self.max_bytes} bytes in UTF-8, got {len(value.encode('utf-8', 'surrogatepass'))}"
        if self.accept is not None and not self.accept(value):
            return f"must be {self.shape}, got {value!r}"
        return None

    def describe(self) -> str:
        parts = [self.shape] if self.shape else []
        parts.append("may be empty" if self.empty else "not empty")
        if self.max_bytes:
            parts.append(f"at most {self.max_bytes} bytes")
        return ", ".join(parts)


@dataclass(frozen=True)
class Check:
    """A rule over several keys of one section: ``verify(section, written)`` returns ``(key,
    problem)`` or None; ``written`` holds the keys the file set. ``keys`` names every key it reads,
    and :func:`section` refuses a name the section does not have."""

    keys: tuple[str, ...]
    verify: Callable[[Any, frozenset[str]], tuple[str, str] | None]


def setting(default: Any, rule: Rule | None, doc: str, *, secret: bool = False) -> Any:
    """A key with its default, its rule (None: any value of the field's type) and its meaning;
    a ``secret`` stays out of ``repr()``."""
    if isinstance(default, (list, dict, set)):
        raise SchemaError("a mutable default would be shared; use a tuple")
    return dataclasses.field(default=default, repr=not secret, metadata={RULE: rule, DOC: doc})


def table(cls: type, doc: str) -> Any:
    """A nested section (a TOML sub-table) whose defaults are ``cls()``."""
    return dataclasses.field(default_factory=cls, metadata={RULE: None, DOC: doc})


def named_tables(cls: type, names: Rule, doc: str) -> Any:
    """Tables of section ``cls`` under names the file chooses (``[consumer.services.<name>]``),
    each name obeying ``names``; none by default."""
    return dataclasses.field(default_factory=dict, metadata={RULE: names, DOC: doc})


def entry_section(kind: Any) -> type | None:
    """The section of one entry when ``kind`` is a field type of :func:`named_tables`, else None."""
    if typing.get_origin(kind) is dict:
        _name, entry = typing.get_args(kind)
        if is_section(entry):
            return typing.cast(type, entry)
    return None


def section(*checks: Check) -> Callable[[type], type]:
    """Declare a dataclass a config section; check its fields and ``checks`` now (see the module doc)."""

    def declare(cls: type) -> type:
        if not dataclasses.is_dataclass(cls):
            raise SchemaError(f"{cls.__name__}: @section goes above @dataclass")
        hints = typing.get_type_hints(cls)
        fields = {item.name: item for item in dataclasses.fields(cls)}
        for name, item in fields.items():
            _check_field(cls, item, hints[name])
        for check in checks:
            unknown = [key for key in check.keys if key not in fields]
            if unknown:
                raise SchemaError(f"{cls.__name__}: a check names {', '.join(unknown)}, which is not a key of this "
                                  f"section (keys: {', '.join(fields)})")
        cls.__burrow_checks__ = checks  # type: ignore[attr-defined]
        return cls

    return declare


def _check_field(cls: type, item: dataclasses.Field[Any], kind: Any) -> None:
    where = f"{cls.__name__}.{item.name}"
    if DOC not in item.metadata:
        raise SchemaError(f"{where}: declare it with setting() or table(), so that it has a rule and a meaning")
    if is_section(kind):
        return
    if typing.get_origin(kind) is dict:
        if entry_section(kind) is None or item.metadata[RULE] is None:
            raise SchemaError(f"{where}: a dict field holds named tables: dict[str, <a @section class>], "
                              "declared with named_tables() and a rule for the names")
        return
    rule = item.metadata[RULE]
    if kind in (int, float) and not isinstance(rule, Between):
        raise SchemaError(f"{where}: a numeric key needs Between(low, high) bounds")
    if rule is not None and kind in (int, float, str):
        problem = rule.problem(item.default)
        if problem:
            raise SchemaError(f"{where}: the default {item.default!r} breaks its own rule: {problem}")


def is_section(kind: Any) -> bool:
    """Whether the field type ``kind`` is a nested section (declared with :func:`section`)."""
    return isinstance(kind, type) and hasattr(kind, "__burrow_checks__")


def checks_of(cls: type) -> tuple[Check, ...]:
    """The cross-key checks :func:`section` recorded for ``cls``."""
    return typing.cast(tuple[Check, ...], cls.__burrow_checks__)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Key:
    """One key of the schema as :func:`walk` lists it, for docs and tests."""

    dotted: str
    kind: Any
    default: Any
    rule: Rule | None
    doc: str


def walk(cls: type, prefix: str = "") -> Iterator[Key]:
    """Every key of section ``cls`` and its nested sections, in declaration order."""
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        if DOC not in item.metadata:
            continue
        dotted = f"{prefix}.{item.name}" if prefix else item.name
        kind = hints[item.name]
        if is_section(kind):
            yield from walk(kind, dotted)
            continue
        entry = entry_section(kind)
        if entry is not None:
            yield from walk(entry, f"{dotted}.<name>")
            continue
        yield Key(dotted, kind, item.default, item.metadata[RULE], item.metadata[DOC])


def sections(cls: type, prefix: str = "") -> Iterator[tuple[str, type]]:
    """Every section under the top-level ``cls`` (``rabbitmq``, ``rabbitmq.tls``, ...), in order."""
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        kind = hints[item.name]
        dotted = f"{prefix}.{item.name}" if prefix else item.name
        if is_section(kind):
            yield dotted, kind
            yield from sections(kind, dotted)
        elif entry_section(kind) is not None:
            yield f"{dotted}.<name>", typing.cast(type, entry_section(kind))
