"""A section of the configuration schema declared wrongly stops its module from importing.

Each case writes a small module declaring one section the way a mistake would, imports it, and
expects :class:`SchemaError` naming the class and field: so a rule cannot silently go missing.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

from burrow.config.rules import SchemaError

PREAMBLE = """
from __future__ import annotations
from dataclasses import dataclass
from burrow.config.rules import Between, Check, OneOf, section, setting
"""


def import_module(tmp_path: Path, body: str) -> None:
    """Import ``body`` as a module of its own (dataclasses look the module up while it executes)."""
    path = tmp_path / "schema_case.py"
    path.write_text(PREAMBLE + textwrap.dedent(body))
    spec = importlib.util.spec_from_file_location("schema_case", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]


def test_a_well_declared_section_imports(tmp_path):
    import_module(tmp_path, """
        @section(Check(("low", "high"), lambda section, written: None))
        @dataclass(frozen=True)
        class Window:
            low: int = setting(1, Between(0, 10), "lower end")
            high: int = setting(5, Between(0, 10), "upper end")
    """)


@pytest.mark.parametrize(
    "body, problem",
    [
        pytest.param("""
            @section(Check(("low", "hihg"), lambda section, written: None))
            @dataclass(frozen=True)
            class Window:
                low: int = setting(1, Between(0, 10), "lower end")
                high: int = setting(5, Between(0, 10), "upper end")
        """, "Window: a check names hihg, which is not a key of this section", id="check-names-unknown-key"),
        pytest.param("""
            @section()
            @dataclass(frozen=True)
            class Window:
                high: float = setting(5.0, None, "upper end")
        """, "Window.high: a numeric key needs Between(low, high) bounds", id="numeric-without-bounds"),
        pytest.param("""
            @section()
            @dataclass(frozen=True)
            class Window:
                mode: str = setting("fast", OneOf(("slow", "steady")), "pace")
        """, "Window.mode: the default 'fast' breaks its own rule", id="default-breaks-rule"),
        pytest.param("""
            @section()
            @dataclass(frozen=True)
            class Window:
                high: int = 5
        """, "Window.high: declare it with setting() or table()", id="without-setting"),
    ],
)
def test_a_wrongly_declared_section_fails_at_import(tmp_path, body, problem):
    with pytest.raises(SchemaError) as caught:
        import_module(tmp_path, body)
    assert str(caught.value).startswith(problem)
