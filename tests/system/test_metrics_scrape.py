"""``promtool check metrics`` on real scrapes of both daemons, run as processes against a real broker.

The daemons are ``burrow-producer`` and ``burrow-consumer`` started from the test's venv with
``[metrics] enabled = true`` on free loopback ports; requests go through the producer's Unix-socket
API so that every series family has samples. promtool comes from Debian's ``prometheus`` package
(scripts/install-system-test-deps.sh), hence the ``system`` mark.
"""

from __future__ import annotations

import dataclasses
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from burrow.config import BurrowConfig, MetricsConfig
from burrow.tools.localbroker import free_port
from burrow.tools.sendclient import UnixHTTPConnection

from processes import Daemon
from waiting import wait_for

pytestmark = pytest.mark.system

REQUESTS = 20


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)


@pytest.fixture
def daemons(make_config: Callable[..., BurrowConfig], tmp_path: Path) -> Iterator[dict[str, Daemon]]:
    """A consumer and a producer daemon sharing the test's topology, metrics on free ports."""
    base = make_config(producer={"socket": str(tmp_path / "producer.sock"), "request_timeout": 10.0})
    started: dict[str, Daemon] = {}
    try:
        for role in ("consumer", "producer"):
            config = dataclasses.replace(base, metrics=MetricsConfig(enabled=True, port=free_port()))
            started[role] = Daemon(role, config, tmp_path).start()
            started[role].wait_ready()
        yield started
    finally:
        for daemon in reversed(started.values()):
            daemon.stop()


def test_scrapes_of_both_daemons_pass_promtool(daemons: dict[str, Daemon]) -> None:
    socket_path = daemons["producer"].config.producer.socket
    for n in range(REQUESTS):
        connection = UnixHTTPConnection(socket_path, timeout=15)
        try:
            connection.request("POST", "/v1/requests", body=b"scrape %d" % n)
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"Consumer processed: scrape %d" % n)
        finally:
            connection.close()
    texts = {role: scrape(daemon.config.metrics.port) for role, daemon in daemons.items()}
    assert f"burrow_producer_http_responses_total{{code=\"200\"}} {REQUESTS}.0" in texts["producer"]
    assert f"burrow_producer_request_duration_seconds_count {REQUESTS}.0" in texts["producer"]
    wait_for(lambda: f'burrow_consumer_requests_total{{outcome="ok"}} {REQUESTS}.0' in scrape(daemons["consumer"].config.metrics.port),
             10, "the consumer's count to include every request")
    for role, text in texts.items():
        assert "process_cpu_seconds_total" in text and f'burrow_info{{role="{role}"' in text
        assert "burrow_broker_connected 1.0" in text
        result = promtool_check_metrics(text)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), f"{role}: {result.stdout}{result.stderr}"
