"""The benchmark target table: generated from the newest committed run file, "n/a" where unmeasured."""

from __future__ import annotations

from benchmarks import targets


def test_results_md_has_the_table_the_generator_makes_from_the_newest_run_file() -> None:
    text = targets.RESULTS_MD.read_text(encoding="utf-8")
    wanted = targets.with_block(text, targets.block(targets.newest_run()))
    assert text == wanted, "benchmarks/RESULTS.md's target table is stale: run python -m benchmarks.targets"


def test_every_target_is_a_row_and_an_unmeasured_one_says_n_a() -> None:
    rows = targets.evaluate({"started": "2026-12-02T08:00:00+00:00"})
    assert [row["key"] for row in rows] == [target.key for target in targets.TARGETS]
    assert all(row["measured"] is None and row["holds"] is None for row in rows)
    assert all(line.endswith("| n/a |") for line in targets.table(rows).splitlines()[2:])


def test_the_api_is_held_against_the_library_at_the_same_number_in_flight() -> None:
    cpu = {"producer": 0.1}
    level = {"64": {"median_rps": 900.0, "cpu_ms_per_request": cpu}, "256": {"median_rps": 1000.0, "cpu_ms_per_request": cpu}}
    summary = {"throughput": {targets.HTTP_API: level, targets.LIBRARY: {"64": {"median_rps": 1000.0},
                                                                           "256": {"median_rps": 1000.0}}}}
    rows = {row["key"]: row for row in targets.evaluate(summary)}
    assert (rows["http-64"]["measured"], rows["http-64"]["holds"]) == (0.9, True)
    assert (rows["http-256"]["measured"], rows["http-256"]["holds"]) == (1.0, True)
    summary["throughput"][targets.HTTP_API]["256"]["median_rps"] = 899.0
    assert targets.evaluate(summary)[[t.key for t in targets.TARGETS].index("http-256")]["holds"] is False
