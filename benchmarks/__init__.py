"""burrow's benchmark harness: ``python -m benchmarks`` (``make bench``) measures burrow against the
seed-style baseline and the broker's ceiling and writes JSON, a markdown table and a PNG."""

from __future__ import annotations

import subprocess
from pathlib import Path

#: Where each run writes its files (git-ignored): ``results/<UTC time>-<mode>/``.
RESULTS_DIR = Path(__file__).resolve().parent / "results"

def revision() -> str:
    """The checkout's commit, with "+changes" when files differ from it ("n/a" outside git)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], check=True,
                                 capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "n/a"
    return f"{commit}+changes" if changed else commit
