"""The README's table of HTTP limits against the code: each value is the constant in force, and
each test it names exists, so the table cannot drift from what the daemon does."""

from __future__ import annotations

import re
from pathlib import Path

from burrow.config import ProducerConfig
from burrow.daemon.http.inputs import MAX_TIMEOUT
from burrow.daemon.http.protocol import MAX_HEADER_BYTES, MAX_HEADERS, MAX_PIPELINED, MAX_REQUEST_TARGET, SLOT_WAIT
from burrow.daemon.http.server import DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT
from burrow.daemon.http.transport import LINGER_BYTES, LINGER_SECONDS

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TESTS = REPO / "tests" / "integration" / "test_http_inputs.py"


def section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("### HTTP limits\n")
    return text[start:text.index("\n#", start + 1)]


def rows() -> dict[str, list[str]]:
    """Limit name -> the row's cells."""
    table = [line for line in section().splitlines() if line.startswith("| ") and not line.startswith("| limit ")]
    return {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table)}


def kib(size: int) -> str:
    return f"{size // 1024} KiB" if size % (1024 * 1024) else f"{size // (1024 * 1024)} MiB"


def test_the_values_are_the_ones_in_force() -> None:
    table = rows()
    assert table["request body"][1] == kib(ProducerConfig().max_message_bytes)
    assert table["header lines"][1] == str(MAX_HEADERS)
    assert table["header bytes (names, values, `: `, line ends)"][1] == kib(MAX_HEADER_BYTES)
    assert table["request target (path and query)"][1] == kib(MAX_REQUEST_TARGET)
    assert table["whole request, head and body"][1] == f"{DEFAULT_READ_TIMEOUT:g} s from its first byte"
    assert table["pipelined requests"][1] == f"{MAX_PIPELINED} queued behind the running one"
    assert table["connections"][1] == f"{DEFAULT_MAX_CONNECTIONS}; a newcomer waits up to {SLOT_WAIT:g} s for a slot"
    assert table["idle keep-alive connection"][1] == f"{DEFAULT_READ_TIMEOUT:g} s"
    assert f"in (0, {MAX_TIMEOUT:g}]" in table["`X-Burrow-Timeout`"][1]
    assert f"for up to {LINGER_SECONDS:g} s or {kib(LINGER_BYTES)}" in " ".join(section().split())


def test_every_named_test_exists_and_the_example_counts_are_the_tests_own() -> None:
    named = 0
    for cells in rows().values():
        for reference in re.findall(r"`((?:tests/[\w/]+\.py::)?test_\w+)`", cells[4]):
            path, _, name = reference.rpartition("::")
            source = (REPO / path if path else DEFAULT_TESTS).read_text(encoding="utf-8")
            assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"README names {reference}, which does not exist"
            named += 1
    assert named >= 13
    examples = re.search(r"^EXAMPLES = (\d+)$", DEFAULT_TESTS.read_text(encoding="utf-8"), re.MULTILINE)
    assert examples and section().count(f"Hypothesis, {examples.group(1)} examples") == 2
