"""Where a counted run came from and where its tally goes: shared by every campaign that writes
``docs/reliability/<scenario>.json`` (tests/faults/faultcheck.py, scripts/soak.py,
tests/system/test_cluster.py, and scripts/render_reliability.py's checks.json). Standard library only, so
the scripts that run outside pytest can import it too.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS_ENV = "BURROW_RELIABILITY_DIR"


def results_dir() -> Path:
    """Where scenario tallies go (created on first use): ``make faults`` points
    ``BURROW_RELIABILITY_DIR`` at docs/reliability/, beside the report; other runs (``make test``)
    write to build/reliability/ and leave the committed tallies alone."""
    path = Path(os.environ.get(RESULTS_ENV) or REPO / "build" / "reliability")
    path.mkdir(parents=True, exist_ok=True)
    return path


def git_revision() -> str:
    """The checkout's commit, ``+dirty`` with uncommitted changes to anything the runs exercise
    (everything but docs/, where ``make faults`` writes its own results), or ``unknown``."""
    try:
        revision = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                  text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)docs"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return revision + ("+dirty" if dirty else "")
