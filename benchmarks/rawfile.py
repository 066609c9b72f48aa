"""Provenance of a benchmark's raw file: what ran, on which revision, when, and how busy the
machine was before and after.

A figure is only worth quoting with the conditions it was measured in, so every raw file a
benchmark writes (``raw.json``) starts with a ``provenance`` block: the command that reproduces
it, the git revision (``+dirty`` with uncommitted changes, from tests/support/provenance.py, which
``make bench*`` puts on PYTHONPATH), the UTC start and end, and the 1/5/15-minute load averages
when the run started and when it ended. A run on a busy machine says so in its own file.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from provenance import git_revision

from benchmarks import RESULTS_DIR


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


class RawFile:
    """Created when a benchmark starts (records the command, revision, start time and load);
    :meth:`write` adds the end time and load and writes the raw data behind the block."""

    def __init__(self, module: str, argv: Sequence[str] | None = None) -> None:
        arguments = list(sys.argv[1:] if argv is None else argv)
        self.provenance: dict[str, Any] = {
            "command": shlex.join(["python", "-m", module, *arguments]),
            "revision": git_revision(),
            "started": _now(),
            "load_before": _load(),
        }

    def write(self, path: Path, data: dict[str, Any], indent: int | None = None) -> Path:
        """Write ``{"provenance": {...}, **data}`` to ``path`` (``data`` must not have its own
        ``provenance`` key)."""
        if "provenance" in data:
            raise ValueError(f"{path}: the raw data already has a 'provenance' key")
        provenance = {**self.provenance, "finished": _now(), "load_after": _load()}
        path.write_text(json.dumps({"provenance": provenance, **data}, indent=indent) + "\n")
        return path


def results_folder(chosen: Path | None, name: str) -> Path:
    """``chosen``, or ``benchmarks/results/<UTC time>-<name>``; created either way."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = chosen or RESULTS_DIR / f"{stamp}-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_run(raw_file: RawFile, folder: Path, raw: dict[str, Any], summarise: Callable[[dict[str, Any]], dict[str, Any]],
              render: Callable[[dict[str, Any]], str]) -> None:
    """One side benchmark's files in ``folder``: ``raw.json`` with its provenance, ``summary.json``
    and ``results.md``; the table goes to stdout and the folder's path to stderr."""
    raw_file.write(folder / "raw.json", raw, indent=1)
    summary = summarise(raw)
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    text = render(summary)
    (folder / "results.md").write_text(text)
    print(text)
    print(f"results: {folder}", file=sys.stderr)
