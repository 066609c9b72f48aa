"""``python -m benchmarks [--quick] [--variants] [--peers] [--out DIR] [--profile]``: run the benchmark, write the results.

Run from the repository root with the venv of ``scripts/bootstrap-dev.sh`` (``make bench`` does
both). Results go to ``benchmarks/results/<UTC time>/`` (git-ignored) and the table is printed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Sequence

from benchmarks import RESULTS_DIR, harness, report, targets
from benchmarks.rawfile import RawFile

logger = logging.getLogger(__name__)



def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, one round: under 2 minutes")
    parser.add_argument("--out", type=Path, help="output folder (default benchmarks/results/<UTC time>)")
    parser.add_argument("--profile", action="store_true",
                        help="record py-spy flame graphs of the burrow processes at the highest concurrency of round 1")
    parser.add_argument("--variants", action="store_true",
                        help="also measure burrow with one setting changed (prefetch 128, classic request queue)")
    parser.add_argument("--peers", action="store_true",
                        help="also measure Celery (rpc://), nameko and aio-pika's RPC, each in its own cached venv")
    parser.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                        help="only re-draw results.md and results.png next to an existing results.json")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy executable for --profile")
    args = parser.parse_args(argv)
    raw_file = RawFile("benchmarks", argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.profile and not args.py_spy:
        parser.error("--profile needs py-spy (pip install py-spy, or make bench-profile)")
    if args.render:
        summary = json.loads(args.render.read_text())
        summary["targets"] = targets.evaluate(summary)  # the bounds as they stand now, like RESULTS.md
        paths = report.write(summary, args.render.parent)
        print(paths["markdown"].read_text())
        return 0
    settings = harness.Settings.quick() if args.quick else harness.Settings.full()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = args.out or RESULTS_DIR / f"{stamp}-{settings.mode}"
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = harness.run_benchmark(settings, out_dir, py_spy=args.py_spy if args.profile else None, variants=args.variants,
                                with_peers=args.peers)
    # Every latency sample, for other analyses than the summary's percentiles and CDF.
    raw_file.write(out_dir / "raw.json", raw)
    summary = report.summarise(raw)
    summary["provenance"] = raw_file.provenance  # the command and revision, for the target table
    paths = report.write(summary, out_dir)
    print(paths["markdown"].read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
