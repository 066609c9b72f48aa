"""A real Prometheus (Debian's ``prometheus``) on a deployed host scrapes the daemons and the broker.

One host in its own network namespace gets all three roles from ``ansible/site.yml`` with both
daemons' metrics on, and Debian's Prometheus server with the repository's example scrape config
(targets on localhost, a 2 s scrape and rule evaluation interval) and ``burrow-alerts.yml`` as they
are. Then: every job is up, burrow's and the broker's series are there, every query of the Grafana
dashboard returns data, stopping ``burrow-consumer`` makes ``BurrowNoConsumer`` pending, then
firing once its ``for:`` window has passed, and a request's W3C trace id finds its journal lines in
both daemons.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .nspawn import Host, SSHKey, ensure_root, hosts, wait_until
from .test_deploy import DEPLOY_PACKAGES, VHOST, Deployment, deploy
from .test_monitoring import ALERTS, SCRAPE_CONFIG, dashboard_queries

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

INTERVAL = "2s"
JOBS = {"burrow-producer", "burrow-consumer", "rabbitmq", "rabbitmq-queues"}
#: The BurrowNoConsumer rule's ``for:`` in burrow-alerts.yml.
NO_CONSUMER_FOR = 60.0


def prometheus_config() -> str:
    """The example scrape config, pointed at this host's targets and evaluated every 2 s."""
    text = SCRAPE_CONFIG.read_text()
    for old, new in (
        ("scrape_interval: 15s", f"scrape_interval: {INTERVAL}"),
        ("evaluation_interval: 15s", f"evaluation_interval: {INTERVAL}"),
        ("broker.example.net", "127.0.0.1"),
        ("vhost: [burrow]", f"vhost: [{VHOST}]"),
    ):
        assert old in text, f"{SCRAPE_CONFIG.name} no longer contains {old!r}"
        text = text.replace(old, new)
    return text


def query(host: Host, expr: str) -> list[dict[str, object]]:
    """The result vector of an instant query, through Prometheus' HTTP API on the host."""
    output = host.run(
        ["curl", "-sS", "--fail", "--max-time", "10", "-G", "http://127.0.0.1:9090/api/v1/query", "--data-urlencode",
         f"query={expr}"]
    ).stdout
    document = json.loads(output)
    assert document["status"] == "success", document
    result: list[dict[str, object]] = document["data"]["result"]
    return result


def alert_states(host: Host, name: str) -> set[str]:
    output = host.run(["curl", "-sS", "--fail", "--max-time", "10", "http://127.0.0.1:9090/api/v1/alerts"]).stdout
    return {alert["state"] for alert in json.loads(output)["data"]["alerts"] if alert["labels"]["alertname"] == name}


@pytest.fixture(scope="module")
def monitored(nspawn_root: Path, ssh_key: SSHKey, burrow_deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The deployed host with Prometheus scraping it; every job up before the tests start.

    ``nspawn_root`` checks the tools and reaps leftovers; this scenario needs its own root with the
    deployment's packages plus prometheus (the hosts have no mirror: the rabbitmq role's firewall
    needs nftables preinstalled).
    """
    root = ensure_root([*DEPLOY_PACKAGES, "prometheus"])
    tmp = tmp_path_factory.mktemp("prometheus")
    metrics_on = {"burrow_producer_metrics_enabled": True, "burrow_consumer_metrics_enabled": True}
    with hosts(root, ["monitored"], ssh_key=ssh_key, private_network=True) as (host,):
        deployment = deploy(host, host, host, tmp, burrow_deb, "localhost", extra_vars=metrics_on, runs=1)
        host.write_file("/etc/prometheus/prometheus.yml", prometheus_config())
        host.write_file("/etc/prometheus/burrow-alerts.yml", ALERTS.read_text())
        host.run(["promtool", "check", "config", "/etc/prometheus/prometheus.yml"])
        host.systemctl("enable", "prometheus.service")
        host.systemctl("restart", "prometheus.service")

        last: list[str] = []

        def all_up() -> bool:
            try:
                up = query(host, "up == 1")
            except Exception as exc:  # Prometheus still starting: the deadline below reports the last error
                last[:] = [repr(exc)]
                return False
            last[:] = [f"up: {up}"]
            # ">=": the package's own "prometheus" job, scraped before the restart, stays visible a while.
            return {sample["metric"]["job"] for sample in up} >= JOBS  # type: ignore[index]

        try:
            wait_until(all_up, 180, f"Prometheus to scrape {sorted(JOBS)} successfully")
        except Exception as exc:
            targets = host.run(["curl", "-sS", "--max-time", "10", "http://127.0.0.1:9090/api/v1/targets"], check=False)
            raise AssertionError(f"{exc}\nlast check: {last}\ntargets: {targets.stdout[-4000:]}\n{host.journal('prometheus.service', lines=30)}") from exc
        yield deployment


def test_burrow_and_broker_series_are_scraped(monitored: Deployment) -> None:
    host = monitored.broker
    result = host.run(["burrow", "send", "--count", "40", "--concurrency", "4", "ping"], check=False, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_until(lambda: bool(query(host, 'burrow_producer_requests_total{outcome="ok"} >= 40')), 30,
               "40 answered requests in Prometheus")
    for expr in (
        'burrow_consumer_requests_total{outcome="ok"} >= 40',
        "burrow_producer_request_duration_seconds_count >= 40",
        'burrow_producer_http_responses_total{code="200"} >= 40',
        'burrow_info{role="consumer"}',
        "burrow_broker_connected == 1",
        'process_resident_memory_bytes{job="burrow-consumer"}',
        f'rabbitmq_detailed_queue_consumers{{vhost="{VHOST}", queue="burrow.requests"}} >= 1',
        f'rabbitmq_detailed_queue_messages{{vhost="{VHOST}", queue="burrow.dead"}}',
        "rabbitmq_identity_info",
    ):
        # Each target is scraped on its own 2 s clock: the consumer's last scrape may predate the
        # producer's, so each series gets a scrape interval or few to appear.
        wait_until(lambda: bool(query(host, expr)), 20, expr, 1)


def test_every_dashboard_query_returns_data(monitored: Deployment) -> None:
    host = monitored.broker
    host.run(["burrow", "send", "--count", "20", "--concurrency", "2", "dashboard"], timeout=90)
    empty = []
    for title, expr in dashboard_queries():
        deadline = time.monotonic() + 20
        while not query(host, expr) and time.monotonic() < deadline:
            time.sleep(1)
        if not query(host, expr):
            empty.append(f"{title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_one_trace_id_shows_the_requests_way_through_both_daemons(monitored: Deployment) -> None:
    """``journalctl TRACE_ID=...`` finds the request in the producer's and the consumer's journal."""
    host = monitored.broker
    trace = secrets.token_hex(16)
    traceparent = f"00-{trace}-{secrets.token_hex(8)}-01"
    response = host.run(
        ["curl", "-sS", "--fail", "--max-time", "30", "--unix-socket", "/run/burrow/producer.sock", "-D", "-",
         "-H", f"traceparent: {traceparent}", "--data-binary", "traced", "http://burrow/v1/requests"]
    ).stdout
    assert re.search(rf"^traceparent: 00-{trace}-[0-9a-f]{{16}}-01\r?$", response, re.MULTILINE | re.IGNORECASE), response

    def units() -> set[str]:
        return {entry.get("_SYSTEMD_UNIT", "") for entry in host.journal_json(None, f"TRACE_ID={trace}")}

    wait_until(lambda: {"burrow-producer.service", "burrow-consumer.service"} <= units(), 15,
               f"journal entries with TRACE_ID={trace} from both daemons")


def test_stopping_the_consumer_fires_no_consumer_within_its_window(monitored: Deployment) -> None:
    host = monitored.broker
    assert "BurrowNoConsumer" not in {
        sample["metric"]["alertname"] for sample in query(host, "ALERTS")  # type: ignore[index]
    }
    host.systemctl("stop", "burrow-consumer.service")
    stopped = time.monotonic()
    try:
        wait_until(lambda: bool(alert_states(host, "BurrowNoConsumer")), 30, "BurrowNoConsumer pending")
        pending_after = time.monotonic() - stopped
        wait_until(lambda: "firing" in alert_states(host, "BurrowNoConsumer"), NO_CONSUMER_FOR + 30,
                   "BurrowNoConsumer firing")
        firing_after = time.monotonic() - stopped
    finally:
        host.systemctl("start", "burrow-consumer.service")
    assert pending_after < NO_CONSUMER_FOR
    assert NO_CONSUMER_FOR <= firing_after < NO_CONSUMER_FOR + 30
