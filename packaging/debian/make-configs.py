#!/usr/bin/python3
"""Derive /etc/burrow/consumer.toml and producer.toml from the documented example configuration.

Called from debian/rules as ``make-configs.py EXAMPLE OUTDIR``. Each file keeps every key and comment
of the example, drops the other daemon's section, names a per-service broker user and reads the
password from the systemd credential instead of holding one. The build fails, naming the line,
when the example no longer has the lines this rewrites, so a changed schema cannot ship stale files.
"""

from __future__ import annotations

import logging
import re
import sys
import tomllib
from pathlib import Path

logger = logging.getLogger(__name__)

ROLES = ("consumer", "producer")
SECTION = re.compile(r"^\[([A-Za-z0-9_.]+)\]\s*(#.*)?$")


def _replace_once(text: str, old: str, new: str) -> str:
    """Replace the one line ``old`` with ``new``; raise if the example has it zero or several times."""
    count = text.count(old)
    if count != 1:
        raise ValueError(f"expected exactly one line {old!r} in the example, found {count}")
    return text.replace(old, new)


def _drop_section(text: str, name: str) -> str:
    """Remove the table ``[name]`` (up to the next table header) from the TOML text."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        header = SECTION.match(line)
        if header:
            skipping = header.group(1) == name
        if not skipping:
            kept.append(line)
    return "".join(kept)


def derive(example: str, role: str) -> str:
    """Return the configuration for ``role`` ("consumer" or "producer") built from the example text."""
    other = "producer" if role == "consumer" else "consumer"
    text = _drop_section(example, other)
    text = _replace_once(text, 'username = "guest"', f'username = "burrow-{role}"')
    text = _replace_once(text, 'password = "guest"\n', "")
    text = _replace_once(
        text,
        '# password_file = "${CREDENTIALS_DIRECTORY}/amqp-password"',
        'password_file = "${CREDENTIALS_DIRECTORY}/amqp-password"',
    )
    header = (
        f"# burrow-{role}'s configuration, installed by the burrow package as a conffile.\n"
        "# The broker password is not here: burrow-"
        f"{role}.service passes it in as the credential amqp-password.\n"
    )
    text = header + text
    parsed = tomllib.loads(text)
    if other in parsed or "password" in parsed.get("rabbitmq", {}):
        raise ValueError(f"derived {role} configuration still has [{other}] or a password")
    return text


def main(argv: list[str]) -> int:
    """Write one configuration per daemon into the output folder and log what was written."""
    logging.basicConfig(level=logging.INFO, format="make-configs: %(message)s")
    if len(argv) != 3:
        logger.error("usage: %s EXAMPLE OUTDIR", argv[0])
        return 2
    example = Path(argv[1]).read_text(encoding="utf-8")
    outdir = Path(argv[2])
    for role in ROLES:
        target = outdir / f"{role}.toml"
        target.write_text(derive(example, role), encoding="utf-8")
        logger.info("wrote %s", target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
