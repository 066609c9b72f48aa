"""What the .deb leaves out of the package: modules only the tests and benchmarks use.

``packaging/debian/rules`` deletes the modules of its ``TEST_ONLY`` list from the installed venv.
That is safe only while no shipped module imports them, which is what this test holds.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "packaging" / "debian" / "rules"
PACKAGE = REPO / "daemons"


def removed_modules() -> list[str]:
    match = re.search(r"^TEST_ONLY := (.+)$", RULES.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{RULES}: no TEST_ONLY list"
    return match.group(1).split()


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def test_the_rules_delete_the_test_only_modules_from_the_venv() -> None:
    rules = RULES.read_text(encoding="utf-8")
    assert "$(TEST_ONLY:%=-path '*/site-packages/%' -o)" in rules and "-delete" in rules
    modules = removed_modules()
    assert modules == ["burrow/tools/localcluster.py"]
    for path in modules:
        assert (PACKAGE / path).is_file(), f"{RULES}: TEST_ONLY names {path}, which is not in {PACKAGE}"


def test_no_shipped_module_imports_a_test_only_one() -> None:
    removed = removed_modules()
    patterns = {path: re.compile(rf"\b{re.escape(module_name(path))}\b|from {re.escape(module_name(path).rpartition('.')[0])} "
                                 rf"import [^\n]*\b{re.escape(module_name(path).rpartition('.')[2])}\b") for path in removed}
    offenders = [
        f"{source.relative_to(REPO)} imports {path}"
        for source in sorted((PACKAGE / "burrow").rglob("*.py"))
        if str(source.relative_to(PACKAGE)) not in removed
        for path, pattern in patterns.items()
        if pattern.search(source.read_text(encoding="utf-8"))
    ]
    assert offenders == []
