"""The monitoring kit checked by promtool: alert rules and their unit tests, the scrape config, and
every PromQL expression of the Grafana dashboard.

promtool comes from Debian's ``prometheus`` package (scripts/install-system-test-deps.sh), hence
the ``system`` mark; none of these tests needs a host or a broker.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from .nspawn import REPO

pytestmark = pytest.mark.system

PROMETHEUS = REPO / "monitoring" / "prometheus"
ALERTS = PROMETHEUS / "burrow-alerts.yml"
ALERT_TESTS = PROMETHEUS / "burrow-alerts.test.yml"
SCRAPE_CONFIG = PROMETHEUS / "scrape-config.example.yml"
DASHBOARD = REPO / "monitoring" / "grafana" / "burrow-dashboard.json"

#: What Grafana puts in place of its own variables before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$service": ".*"}


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def alert_names() -> list[str]:
    return re.findall(r"^\s+- alert: (\w+)$", ALERTS.read_text(), re.MULTILINE)


def dashboard_queries() -> list[tuple[str, str]]:
    """``(panel title, expression)`` of every target of every panel, Grafana variables replaced."""
    queries = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append((panel["title"], expr))
    return queries


def test_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def test_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", ALERT_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    """Each alert appears once with expected alerts and once with none (``exp_alerts: []``)."""
    text = ALERT_TESTS.read_text()
    cases = re.findall(r"alertname: (\w+)\n\s+exp_alerts:( \[\])?", text)
    firing = {name for name, empty in cases if not empty}
    quiet = {name for name, empty in cases if empty}
    assert set(alert_names()) <= firing, sorted(set(alert_names()) - firing)
    assert set(alert_names()) <= quiet, sorted(set(alert_names()) - quiet)
    assert len(alert_names()) >= 9


def test_scrape_config_example_is_valid() -> None:
    result = promtool("check", "config", SCRAPE_CONFIG.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """promtool parses each panel's expression as a recording rule; a typo names its panel."""
    queries = dashboard_queries()
    rules = [{"record": f"dashboard:query_{n}", "expr": expr} for n, (_, expr) in enumerate(queries)]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr + "\n" + "\n".join(
        f"query_{n} ({title}): {expr}" for n, (title, expr) in enumerate(queries)
    )
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_every_dashboard_panel_has_a_query() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert panels and all(panel["targets"] and all(target["expr"] for target in panel["targets"]) for panel in panels)
    assert len({panel["id"] for panel in panels}) == len(panels)


def test_readme_lists_every_alert() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [name for name in alert_names() if f"`{name}`" not in readme]
    assert not missing, missing
