"""The CPU table under the targets: per-process costs, cores busy, and each ratio's two factors."""

from __future__ import annotations

import pytest

from benchmarks import costs, targets


def _summary() -> dict:
    library = {"median_rps": 5000.0, "cpu_ms_per_request": {"producer": 0.1, "consumer": 0.1, "broker": 0.2}}
    http = {"median_rps": 3000.0, "cpu_ms_per_request": {"producer": 0.2, "consumer": 0.1, "client": 0.05, "broker": 0.25}}
    return {
        "throughput": {"burrow-reliable": {"64": library, "256": library}, "burrow-http-api": {"64": http, "256": http}},
        "ceiling": {"rpc_ceiling_rps": 8000.0, "cpu_ms_per_message": {"publisher": 0.05, "consumer": 0.04, "broker": 0.035}},
    }


def test_a_row_sums_its_processes_and_derives_the_cores_they_kept_busy() -> None:
    found = costs.rows(_summary())
    http = found["HTTP API at 64 connections"]
    assert http is not None
    assert http["total"] == pytest.approx(0.6)
    assert http["busy"] == pytest.approx(3000 * 0.6 / 1000)
    ceiling = found[costs.CEILING_ROW]
    assert ceiling is not None
    # Two one-way messages per request.
    assert (ceiling["caller"], ceiling["consumer"], ceiling["broker"]) == pytest.approx((0.1, 0.08, 0.07))
    assert ceiling["busy"] == pytest.approx(8000 * 0.25 / 1000)


def test_each_ratio_is_the_product_of_its_cpu_and_its_busy_factor() -> None:
    for what, ratio, cpu, busy in costs.ratios(costs.rows(_summary())):
        assert ratio is not None and cpu is not None and busy is not None, what
        assert ratio == pytest.approx(cpu * busy), what
    what, ratio, cpu, busy = costs.ratios(costs.rows(_summary()))[0]
    assert (ratio, cpu, busy) == pytest.approx((0.6, 0.4 / 0.6, 3000 * 0.6 / (5000 * 0.4)))


def test_what_the_run_did_not_measure_prints_n_a_never_zero() -> None:
    summary = _summary()
    del summary["ceiling"]["cpu_ms_per_message"]  # a run from before the ceiling counted its CPU
    del summary["throughput"]["burrow-http-api"]["256"]
    text = costs.block(summary)
    assert f"| {costs.CEILING_ROW} | n/a | n/a | n/a | n/a | n/a | n/a | n/a |" in text
    assert "| HTTP API at 256 connections | n/a |" in text
    assert "- reliable at 256 / RPC ceiling: n/a" in text
    assert "- HTTP API / library at 256: n/a" in text
    assert "| library at 64 in flight | 5000 | 0.100 | n/a | 0.100 | 0.200 | 0.400 | 2.00 |" in text


def test_the_header_says_how_far_the_machines_own_speed_moved() -> None:
    assert targets.speed({}) == "speed probe n/a"
    assert targets.speed({"speed_probe_ms": [40.0, 50.0, 44.0]}) == (
        "speed probe 40.0-50.0 ms over 3 probes (the slowest 25 % slower than the fastest)")
