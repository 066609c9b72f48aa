#!/usr/bin/python3
"""Copy the shared hardening block of systemd/hardening.conf into every systemd/*.service, and
make burrow-consumer@.service from burrow-consumer.service.

Usage: scripts/sync-unit-hardening.py [--check]

Each service unit carries the block between a ``# --- Hardening`` line and a ``# --- End of
hardening ---`` line. The template unit ``burrow-consumer@.service`` keeps its own header comment
(everything before ``[Unit]``); the rest is ``burrow-consumer.service`` with the instance name in
the description and the config path (:data:`TEMPLATE_CHANGES`), so the two cannot drift apart.
Without options the units are rewritten in place (only those that differ); with ``--check``
nothing is written and the exit status is 1 when a unit differs, naming it, so a unit edited by
hand cannot drift from the others unnoticed (tests/unit/test_units.py runs the same comparison).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

UNITS_DIR = Path(__file__).resolve().parents[1] / "systemd"
SOURCE = UNITS_DIR / "hardening.conf"
BEGIN = "# --- Hardening (shared by every burrow daemon: edit systemd/hardening.conf, then run"
BEGIN_TAIL = "# scripts/sync-unit-hardening.py; systemd-analyze security UNIT scores it) ---"
END = "# --- End of hardening ---"
#: The template unit, and the unit its directives come from.
TEMPLATE, PLAIN = "burrow-consumer@.service", "burrow-consumer.service"
#: What makes an instance of the template differ from the plain consumer: each replaced exactly once.
TEMPLATE_CHANGES = (
    ("Description=burrow consumer (", "Description=burrow consumer %i ("),
    ("--config /etc/burrow/consumer.toml", "--config /etc/burrow/consumer-%i.toml"),
)


class UnitLayoutError(ValueError):
    """A unit lacks the begin/end lines of the hardening block; the message names the file."""


def shared_block(source: Path = SOURCE) -> str:
    """Return the directives of ``source``: everything after its own header (up to the first blank line)."""
    _header, separator, body = source.read_text(encoding="utf-8").partition("\n\n")
    if not separator or not body.strip():
        raise UnitLayoutError(f"{source}: expected a header, a blank line, then the hardening directives")
    return body.rstrip("\n") + "\n"


def with_block(unit: Path, block: str) -> str:
    """Return the text of ``unit`` with its hardening block replaced by ``block``."""
    lines = unit.read_text(encoding="utf-8").splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("# --- Hardening")]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\n") == END]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise UnitLayoutError(f"{unit}: expected one '# --- Hardening' line and one {END!r} line after it")
    head = "".join(lines[: starts[0]])
    tail = "".join(lines[ends[0] + 1 :])
    return f"{head}{BEGIN}\n{BEGIN_TAIL}\n{block}{END}\n{tail}"


def as_template(plain_text: str, template: Path) -> str:
    """Return ``template``'s header comment followed by ``plain_text`` from ``[Unit]`` on, changed
    by :data:`TEMPLATE_CHANGES`."""
    head, marker, _ = template.read_text(encoding="utf-8").partition("[Unit]\n")
    _, plain_marker, body = plain_text.partition("[Unit]\n")
    if not marker or not plain_marker:
        raise UnitLayoutError(f"{template}: expected a [Unit] section in it and in {PLAIN}")
    for old, new in TEMPLATE_CHANGES:
        if body.count(old) != 1:
            raise UnitLayoutError(f"{template.parent / PLAIN}: expected {old!r} once, found it {body.count(old)} times")
        body = body.replace(old, new)
    return f"{head}{marker}{body}"


def stale_units(units_dir: Path = UNITS_DIR) -> dict[Path, str]:
    """Return each service unit that differs from what it should be (its hardening block the
    source's, the template made from the plain consumer), with the text it should have."""
    block = shared_block(units_dir / SOURCE.name)
    wanted = {unit: with_block(unit, block) for unit in sorted(units_dir.glob("*.service"))}
    template, plain = units_dir / TEMPLATE, units_dir / PLAIN
    if template in wanted and plain in wanted:
        wanted[template] = as_template(wanted[plain], template)
    return {unit: text for unit, text in wanted.items() if text != unit.read_text(encoding="utf-8")}


def main(argv: list[str]) -> int:
    """Rewrite (or with --check only list) the units that differ from what they should be."""
    logging.basicConfig(level=logging.INFO, format="sync-unit-hardening: %(message)s")
    check = argv[1:] == ["--check"]
    if argv[1:] and not check:
        logger.error("usage: %s [--check]", argv[0])
        return 2
    try:
        stale = stale_units()
    except UnitLayoutError as exc:
        logger.error("%s", exc)
        return 1
    for unit, text in stale.items():
        if check:
            logger.error("%s: differs from %s and %s (run %s)", unit, SOURCE, UNITS_DIR / PLAIN, argv[0])
        else:
            unit.write_text(text, encoding="utf-8")
            logger.info("rewrote %s", unit)
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
