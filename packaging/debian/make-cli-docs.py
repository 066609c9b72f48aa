#!/usr/bin/python3
"""Generate burrow's man pages and bash completion from its argparse parsers.

Called from debian/rules as ``make-cli-docs.py OUTDIR`` with a Python that has burrow and its
``docs`` extra (argparse-manpage and shtab, pinned in pyproject.toml) installed. Writes
``OUTDIR/man/<command>.1`` and ``OUTDIR/completions/<command>`` for ``burrow``, ``burrow-consumer``
and ``burrow-producer``: the pages and the completion always describe the parsers being shipped,
because they are made from them at build time. The hand-written sections (exit status, files,
environment, see also) come from ``man/burrow.include`` and, for both daemons, the template
``man/daemon.include`` beside this script. Set ``SOURCE_DATE_EPOCH`` for a reproducible date
(dpkg-buildpackage does).
"""

from __future__ import annotations

import logging
import string
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Command:
    """One command: the function in ``burrow.cli`` that builds its parser, the NAME line, and the
    values of ``man/daemon.include``'s placeholders (daemons only)."""

    parser: str
    summary: str
    include: dict[str, str] = field(default_factory=dict)


COMMANDS = {
    "burrow": Command("build_parser", "request/response over RabbitMQ: check configurations, send requests, show status"),
    "burrow-consumer": Command("consumer_parser", "burrow's consumer daemon: runs the handler on each request", {
        "role": "consumer",
        "other": "producer",
        "units": "burrow-consumer.service, burrow-consumer@NAME.service",
        "drain": "it stops taking requests, lets the running handlers finish, publishes their replies and acks them.",
        "more_failures": "",
        "files": ".TP\n.I /etc/burrow/consumer.toml, /etc/burrow/consumer-NAME.toml\n"
                 "The configuration of burrow-consumer.service and of each burrow-consumer@NAME.service.",
    }),
    "burrow-producer": Command("producer_parser", "burrow's producer daemon: the local HTTP API over a Unix socket", {
        "role": "producer",
        "other": "consumer",
        "units": "burrow-producer.service with burrow-producer.socket",
        "drain": "it stops accepting clients (the socket unit keeps queueing them for the next producer), "
                 "lets running requests get their replies and closes.",
        "more_failures": ", or the API socket cannot be served",
        "files": ".TP\n.I /etc/burrow/producer.toml\nThe configuration of burrow-producer.service.\n"
                 ".TP\n.I /run/burrow/producer.sock\nThe HTTP API: POST /v1/requests, GET /v1/health, GET /metrics.",
    }),
}


def _run(command: list[str], output: Path) -> None:
    """Run a generator, writing its standard output to ``output``; raise with its stderr if it fails."""
    with output.open("wb") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.PIPE)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.decode(errors='replace').strip()}")


def _include(name: str, command: Command, scratch: Path) -> Path:
    """The hand-written sections of ``name``'s page: its own file, or the daemons' shared one filled in."""
    if not command.include:
        return HERE / "man" / f"{name}.include"
    template = string.Template((HERE / "man" / "daemon.include").read_text(encoding="utf-8"))
    path = scratch / f"{name}.include"
    path.write_text(template.substitute(command.include), encoding="utf-8")
    return path


def generate(outdir: Path) -> list[Path]:
    """Write every man page and completion file under ``outdir``; return their paths."""
    version = metadata.version("burrow")
    manpage_tool = Path(sys.executable).parent / "argparse-manpage"
    (outdir / "man").mkdir(parents=True, exist_ok=True)
    (outdir / "completions").mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="make-cli-docs-") as scratch:
        for name, command in COMMANDS.items():
            page = outdir / "man" / f"{name}.1"
            _run([str(manpage_tool), "--module", "burrow.cli", "--function", command.parser, "--prog", name,
                  "--project-name", "burrow", "--version", version, "--description", command.summary,
                  "--manual-title", "burrow manual", "--include", str(_include(name, command, Path(scratch))),
                  "--author", "burrow developers <burrow@example.org>"], page)
            completion = outdir / "completions" / name
            _run([sys.executable, "-m", "shtab", "--shell=bash", "--error-unimportable",
                  f"burrow.cli.{command.parser}"], completion)
            written += [page, completion]
    return written


def main(argv: list[str]) -> int:
    """Generate into the folder given on the command line and log what was written."""
    logging.basicConfig(level=logging.INFO, format="make-cli-docs: %(message)s")
    if len(argv) != 2:
        logger.error("usage: %s OUTDIR", argv[0])
        return 2
    for path in generate(Path(argv[1])):
        logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
