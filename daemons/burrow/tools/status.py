"""``burrow status``: is each local daemon running, and connected to the broker?

It asks what the daemons already serve, nothing more:

- the producer: ``GET /v1/health`` on its API socket (200 while connected, 503 while not connected
  or draining), and ``GET /metrics`` there when metrics are on (version, reconnects);
- each consumer: its Prometheus endpoint, when its configuration says ``[metrics] enabled = true``
  (``burrow_broker_connected``, version, reconnects, each service's ready requests and consumers);
  without metrics, the ``STATUS=`` line it gives systemd (the unit of ``consumer.toml`` is
  ``burrow-consumer.service``, of ``consumer-N.toml`` ``burrow-consumer@N.service``), which says the
  same: the broker connection and each service's queue.

One line per daemon on stdout, then an exit status for scripts, the worst of the daemons' in the
order 3, 1, 4, 0: 0 every daemon checked is up and connected; 1 one answers but is not connected to
the broker, is draining, or does not answer in time; 3 one is not running (no socket, nothing
listening); 4 one's state cannot be read (a consumer with neither metrics nor a systemd unit, a
socket this user may not use). A consumer configuration that does not load exits 78 (``EX_CONFIG``) before any check.
"""

from __future__ import annotations

import argparse
import enum
import glob
import http.client
import json
import logging
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from burrow.config import BurrowConfig, load_config
from burrow.errors import ConfigError
from burrow.exitcodes import EX_CONFIG, EX_FAILED, EX_NOT_RUNNING, EX_OK
from burrow.tools import file_argument
from burrow.tools.sendclient import UnixHTTPConnection, add_socket_argument

logger = logging.getLogger(__name__)

#: The consumer configurations the package and the Ansible role install (``burrow-consumer`` and
#: each ``burrow-consumer@NAME``).
CONSUMER_CONFIGS = ("/etc/burrow/consumer.toml", "/etc/burrow/consumer-*.toml")
#: Exit status when a daemon's state cannot be read (LSB's "status unknown").
EX_UNKNOWN = 4


class State(enum.Enum):
    """A daemon's state and the exit status it stands for."""

    UP = EX_OK
    DEGRADED = EX_FAILED
    DOWN = EX_NOT_RUNNING
    UNKNOWN = EX_UNKNOWN


#: Worst first: the exit status is that of the worst state seen.
SEVERITY = (State.DOWN, State.DEGRADED, State.UNKNOWN, State.UP)


@dataclass(frozen=True, slots=True)
class Report:
    """One daemon's line: which daemon, where it was asked, its state and the details."""

    role: str
    where: str
    state: State
    detail: str

    def line(self) -> str:
        return f"{self.role:<9} {self.where:<32} {self.state.name.lower()}: {self.detail}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``burrow status``'s options to its sub-parser."""
    parser.add_argument("which", nargs="?", choices=("all", "producer", "consumer"), default="all",
                        help="which daemons to check (default: all)")
    add_socket_argument(parser)
    file_argument(parser.add_argument(
        "--consumer-config", action="append", metavar="FILE",
        help=f"a consumer's configuration, for its metrics endpoint; repeatable "
             f"(default: {' and '.join(CONSUMER_CONFIGS)} that exist)",
    ))
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each daemon (default 5)")


def _samples(exposition: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text -> {sample name: [(labels, value), ...]}."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _metrics_detail(samples: dict[str, list[tuple[dict[str, str], float]]]) -> str:
    """The version and reconnect count, where the exposition has them."""
    parts = []
    for labels, _value in samples.get("burrow_info", []):
        if "version" in labels:
            parts.append(f"version {labels['version']}")
    for _labels, value in samples.get("burrow_reconnects_total", []):
        parts.append(f"{value:.0f} reconnect{'' if value == 1 else 's'}")
    return ", ".join(parts)


def _services_detail(samples: dict[str, list[tuple[dict[str, str], float]]]) -> str:
    """``services: resize 3 ready 2 consumers, ...`` from the consumer's service series."""
    consumers = {labels.get("service"): value for labels, value in samples.get("burrow_consumer_service_consumers", [])}
    parts = [f"{labels['service']} {ready:.0f} ready {consumers.get(labels['service'], 0):.0f} consumer"
             f"{'' if consumers.get(labels['service']) == 1 else 's'}"
             for labels, ready in samples.get("burrow_consumer_service_ready_requests", []) if "service" in labels]
    return "services: " + ", ".join(parts) if parts else ""


def _uptime(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if days else f"{hours}h {minutes}m" if hours else f"{minutes}m"


def _get(path: str, target: str, timeout: float) -> tuple[int, bytes]:
    connection = UnixHTTPConnection(path, timeout=timeout)
    try:
        connection.request("GET", target, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def check_producer(path: str, timeout: float) -> Report:
    """Ask the producer's socket for ``/v1/health`` (and ``/metrics`` when it has them)."""
    try:
        status, body = _get(path, "/v1/health", timeout)
    except FileNotFoundError:
        return Report("producer", path, State.DOWN, "not running: no socket here")
    except ConnectionRefusedError:
        return Report("producer", path, State.DOWN, "not running: nothing listens on the socket")
    except PermissionError:
        return Report("producer", path, State.UNKNOWN, "not allowed to connect (join the socket's group, usually 'burrow')")
    except TimeoutError:
        return Report("producer", path, State.DEGRADED, f"no answer within {timeout:g} s (starting, or hung)")
    except (OSError, http.client.HTTPException) as exc:
        return Report("producer", path, State.DEGRADED, f"bad answer: {exc}")
    try:
        health = json.loads(body)
        connected, in_flight = bool(health["broker_connected"]), int(health["in_flight"])
        draining, uptime = bool(health.get("draining")), float(health.get("uptime_seconds", 0))
    except (ValueError, KeyError, TypeError):
        return Report("producer", path, State.DEGRADED, f"unexpected /v1/health answer ({status}): {body[:200]!r}")
    parts = ["broker connected" if connected else "broker NOT connected", f"{in_flight} in flight",
             f"{health.get('reply_queue_type', 'unknown')} reply queue", f"up {_uptime(uptime)}"]
    if draining:
        parts.insert(0, "draining (stopping)")
    try:
        metrics_status, exposition = _get(path, "/metrics", timeout)
        if metrics_status == 200:
            parts.append(_metrics_detail(_samples(exposition.decode("utf-8", "replace"))))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        logger.debug("No metrics from %s: %s", path, exc)
    state = State.UP if status == 200 and connected and not draining else State.DEGRADED
    return Report("producer", path, state, ", ".join(p for p in parts if p))


def check_consumer(config: BurrowConfig, timeout: float) -> Report:
    """Read the consumer's ``burrow_broker_connected`` from its metrics endpoint, if it has one."""
    metrics = config.metrics
    if not metrics.enabled:
        return check_consumer_unit(config, timeout)
    host = "127.0.0.1" if metrics.host in ("0.0.0.0", "") else "::1" if metrics.host == "::" else metrics.host
    url = f"http://{f'[{host}]' if ':' in host else host}:{metrics.port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            samples = _samples(response.read().decode("utf-8", "replace"))
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return Report("consumer", config.path, State.DOWN, f"not running: nothing listens on {url}")
        if isinstance(exc.reason, TimeoutError):
            return Report("consumer", config.path, State.DEGRADED, f"no answer from {url} within {timeout:g} s")
        return Report("consumer", config.path, State.DEGRADED, f"{url}: {exc.reason}")
    except (OSError, ValueError) as exc:
        return Report("consumer", config.path, State.DEGRADED, f"{url}: {exc}")
    connected = [value for _labels, value in samples.get("burrow_broker_connected", [])]
    if not connected:
        return Report("consumer", config.path, State.DEGRADED, f"{url} has no burrow_broker_connected (not a burrow consumer?)")
    up = connected[0] == 1
    parts = ["broker connected" if up else "broker NOT connected", _metrics_detail(samples), _services_detail(samples),
             url]
    return Report("consumer", config.path, State.UP if up else State.DEGRADED, ", ".join(p for p in parts if p))


def consumer_unit(config_path: str) -> str | None:
    """The systemd unit the package runs with ``config_path``, or None for another file name."""
    name = Path(config_path).name
    if name == "consumer.toml":
        return "burrow-consumer.service"
    instance = re.fullmatch(r"consumer-(.+)\.toml", name)
    return f"burrow-consumer@{instance.group(1)}.service" if instance else None


def check_consumer_unit(config: BurrowConfig, timeout: float) -> Report:
    """A consumer without metrics: its unit's state and the ``STATUS=`` line it gave systemd."""
    unit = consumer_unit(config.path)
    systemctl = shutil.which("systemctl")
    unknown = "no endpoint to ask ([metrics] enabled = false)"
    if unit is None or systemctl is None:
        return Report("consumer", config.path, State.UNKNOWN, f"{unknown} and no systemd unit runs this file")
    try:
        shown = subprocess.run([systemctl, "show", "--property=LoadState,ActiveState,SubState,StatusText", unit],
                               capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Report("consumer", config.path, State.UNKNOWN, f"{unknown} and systemctl show {unit}: {exc}")
    properties = dict(line.partition("=")[::2] for line in shown.stdout.splitlines())
    active, status = properties.get("ActiveState", ""), properties.get("StatusText", "")
    if shown.returncode != 0 or not active or properties.get("LoadState") == "not-found":
        why = shown.stderr.strip().splitlines()[-1:] or [f"{unit} is not installed"]
        return Report("consumer", config.path, State.UNKNOWN, f"{unknown} and systemd cannot tell: {why[0]}")
    if active != "active":
        return Report("consumer", config.path, State.DOWN, f"not running: {unit} is {active} "
                      f"({properties.get('SubState', '?')})")
    up = " connected" in status and "NOT connected" not in status
    return Report("consumer", config.path, State.UP if up else State.DEGRADED,
                  f"{unit}: {status or 'no status yet (starting)'}")


def consumer_configs(given: list[str] | None) -> list[str]:
    """The configurations given, or the installed ones that exist."""
    if given:
        return given
    found = [path for pattern in CONSUMER_CONFIGS for path in sorted(glob.glob(pattern))]
    return list(dict.fromkeys(found))


def run(args: argparse.Namespace) -> int:
    """Check the daemons ``args.which`` names; print one line each and return the exit status."""
    configs: list[BurrowConfig] = []
    if args.which in ("all", "consumer"):
        try:
            configs = [load_config(path, read_secrets=False) for path in consumer_configs(args.consumer_config)]
        except ConfigError as exc:
            print(f"burrow: {exc}", file=sys.stderr)
            return EX_CONFIG
    reports = []
    if args.which in ("all", "producer"):
        reports.append(check_producer(args.socket, args.timeout))
    reports += [check_consumer(config, args.timeout) for config in configs]
    if args.which == "consumer" and not configs:
        reports.append(Report("consumer", Path(CONSUMER_CONFIGS[0]).parent.as_posix(), State.UNKNOWN,
                              "no consumer configuration found (give --consumer-config)"))
    for report in reports:
        print(report.line())
    return next(state.value for state in SEVERITY if any(r.state is state for r in reports))
