"""burrow's benchmark harness: ``python -m benchmarks`` (``make bench``) measures burrow against the
seed-style baseline and the broker's ceiling and writes JSON, a markdown table and a PNG."""

from __future__ import annotations

from pathlib import Path

#: Where each run writes its files (git-ignored): ``results/<UTC time>-<mode>/``.
RESULTS_DIR = Path(__file__).resolve().parent / "results"
