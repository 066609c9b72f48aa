"""``make help``: every target of the Makefile and mk/*.mk has one line, and the README's command list
is exactly that output, so a target added, renamed or removed without its line (or without the
README) fails here rather than leaving a newcomer with a stale list."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
#: A rule line: ``name:`` or ``name: prerequisites ## ...`` (not ``NAME := value``).
RULE = re.compile(r"^([a-z][a-z0-9-]*)\s*:(?!=)(.*)$", re.M)
#: One line of ``make help``.
HELP_LINE = re.compile(r"make ([a-z][a-z0-9-]*) +# (\S.*)")
#: The README's copy of ``make help`` stands between these two lines.
BEGIN, END = "<!-- make help: begin -->", "<!-- make help: end -->"
#: Test targets are test-*; `make faults` also renders docs/reliability.md from the run's tallies.
TEST_TARGET = re.compile(r"test(-[a-z0-9-]+)?|faults")
#: The repository's scripts and tests a recipe names.
NAMED_FILE = re.compile(r"\b(?:tests|scripts|benchmarks|ansible)/[\w./-]+\.(?:py|sh)\b")


def makefiles() -> list[Path]:
    return [REPO / "Makefile", *sorted((REPO / "mk").glob("*.mk"))]


def make_help() -> list[str]:
    result = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def rules() -> dict[str, str]:
    """Each target and its recipe (the tab-indented lines after its rule lines), from every makefile."""
    recipes: dict[str, str] = {}
    for path in makefiles():
        target = None
        for line in path.read_text().splitlines():
            if match := RULE.match(line):
                target = match.group(1)
                recipes.setdefault(target, "")
            elif line.startswith("\t") and target is not None:
                recipes[target] += line + "\n"
            elif line.strip() and not line.startswith("#"):
                target = None
    return recipes


def test_every_target_has_exactly_one_help_line():
    lines = make_help()
    for line in lines:
        assert HELP_LINE.fullmatch(line), f"not a `make help` line: {line!r}"
        assert len(line) <= 100, f"over 100 characters: {line!r}"
    listed = [HELP_LINE.fullmatch(line).group(1) for line in lines]
    assert len(listed) == len(set(listed)), f"listed twice: {sorted({t for t in listed if listed.count(t) > 1})}"
    missing = sorted(set(rules()) - set(listed))
    assert not missing, f"targets without a `## ` line: {missing}"


def test_readme_command_list_is_make_help():
    text = README.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, f"README.md needs one {BEGIN} ... {END} block"
    block = text.split(BEGIN)[1].split(END)[0].strip().splitlines()
    assert block == ["```sh", *make_help(), "```"], "README.md's command list differs from `make help`: paste its output"


def test_targets_that_run_pytest_are_named_test():
    misnamed = sorted(name for name, recipe in rules().items() if "$(PYTEST)" in recipe and not TEST_TARGET.fullmatch(name))
    assert not misnamed, f"test targets not named test-*: {misnamed}"


def test_files_the_recipes_name_exist():
    named = {match.group(0) for path in makefiles() for match in NAMED_FILE.finditer(path.read_text())}
    assert named, "no file names found: the pattern is broken"
    assert sorted(name for name in named if not (REPO / name).exists()) == []
