"""The "HTTP API" system of the benchmark: ``burrow-producer``'s Unix-socket API under load (issue 12).

Three processes, like the library rows plus the daemon in between: ``burrow-consumer`` (defaults,
its own request queue), the producer daemon ``burrow-producer --config FILE`` serving its API on a
socket in the run's private folder, and a load client (:func:`http_client_main`) that drives the
API over HTTP/1.1 keep-alive connections with :mod:`burrow.tools.socketburst` (uvloop, httptools),
one connection per request in flight. The client's CPU is measured like every other process, so
the table shows that it is not the bottleneck.

:mod:`benchmarks.harness` runs it in the same rounds, on the same broker, as the library rows.
Beyond the common measurements, :func:`measure_extras` takes the issue's own figures: p99 at
1,000 req/s through the API (and through the library, for reference), and the daemon's RSS with
256 idle keep-alive connections open. :mod:`benchmarks.targets` holds them against their bounds and
:func:`markdown_lines` reports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from burrow.config import BurrowConfig, ProducerConfig, RabbitMQConfig, TopologyConfig, to_toml
from burrow.tools.burst import percentile
from burrow.tools.localbroker import LocalBroker
from burrow.tools.sendclient import SocketClient
import uvloop

from burrow.tools.socketburst import KeepAliveClient, run_socket_burst

from benchmarks import clients
from benchmarks.targets import HTTP_API, LIBRARY, TARGET_CONNECTIONS, TARGET_RATE

logger = logging.getLogger(__name__)

LABEL = "burrow, HTTP API (producer daemon)"
IDLE_CONNECTIONS = 256
#: Seconds the daemon may take to connect to the broker and answer /v1/health.
READY_TIMEOUT = 60.0


def open_loop(path: str, count: int, rate: float, max_seconds: float, connections: int = TARGET_CONNECTIONS,
              check: Callable[[bytes], bool] = lambda reply: True) -> dict[str, Any]:
    """``count`` requests, request n due at start + n / rate (until ``max_seconds``), over a pool
    of keep-alive connections; latency counts from the due time, so queueing in the client shows."""
    latencies: list[float] = []
    failed = [0]
    sent = [0]

    async def main() -> float:
        pool: asyncio.Queue[KeepAliveClient] = asyncio.Queue()
        for _ in range(connections):
            pool.put_nowait(KeepAliveClient(path, clients.REPLY_TIMEOUT))
        started = time.monotonic()

        async def one(due: float) -> None:
            client = await pool.get()
            try:
                status, reply = await client.post("/v1/requests", clients.BODY)
                if status == 200 and check(reply):
                    latencies.append(time.monotonic() - due)
                else:
                    failed[0] += 1
            except (OSError, asyncio.TimeoutError):
                failed[0] += 1
            finally:
                pool.put_nowait(client)

        tasks = []
        for n in range(count):
            due = started + n / rate
            if due - started >= max_seconds:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(due)))
            sent[0] += 1
        await asyncio.gather(*tasks)
        while not pool.empty():
            pool.get_nowait().close()
        return time.monotonic() - started

    loop = uvloop.new_event_loop()
    try:
        elapsed = loop.run_until_complete(main())
    finally:
        loop.close()
    return {"sent": sent[0], "ok": len(latencies), "failed": failed[0], "elapsed": elapsed, "latencies": latencies}


class HttpDriver:
    """The load client's commands (see :mod:`benchmarks.clients`), over the daemon's socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._loop = uvloop.new_event_loop()
        self._idle: list[KeepAliveClient] = []

    def closed(self, count: int, concurrency: int, max_seconds: float, keep: bool = True) -> dict[str, Any]:
        result = run_socket_burst(self.path, [clients.BODY], count=count, concurrency=concurrency,
                                  client_timeout=clients.REPLY_TIMEOUT, max_seconds=max_seconds, show_progress=False,
                                  check=lambda body, reply: reply == clients.EXPECTED)
        return {"sent": result.sent, "ok": result.sent - result.failed, "failed": result.failed,
                "elapsed": result.elapsed, "latencies": result.latencies if keep else []}

    def rate(self, count: int, rate: float, max_seconds: float, in_flight: int = TARGET_CONNECTIONS) -> dict[str, Any]:
        return open_loop(self.path, count, rate, max_seconds, in_flight, check=lambda reply: reply == clients.EXPECTED)

    def idle(self, connections: int) -> dict[str, Any]:
        """Open ``connections`` keep-alive connections, one request on each, and leave them open."""

        async def open_all() -> int:
            opened = [KeepAliveClient(self.path, clients.REPLY_TIMEOUT) for _ in range(connections)]
            answers = await asyncio.gather(*(client.post("/v1/requests", clients.BODY) for client in opened))
            self._idle.extend(opened)
            return sum(1 for status, reply in answers if status == 200 and reply == clients.EXPECTED)

        return {"open": connections, "ok": self._loop.run_until_complete(open_all())}

    def release(self) -> dict[str, Any]:
        for client in self._idle:
            client.close()
        self._loop.run_until_complete(asyncio.sleep(0))
        released = len(self._idle)
        self._idle = []
        return {"released": released}


def http_client_main(conn: Connection, path: str) -> None:
    """Child process: the load client of the HTTP API, serving the harness's commands."""
    logging.basicConfig(level=logging.WARNING)
    driver = HttpDriver(path)
    conn.send({"ready": True})
    while True:
        try:
            command = conn.recv()
        except EOFError:
            return
        kind, arguments = command[0], command[1:]
        if kind == "stop":
            driver.release()
            conn.send({"stopped": True})
            return
        handler = getattr(driver, kind, None) if kind in ("closed", "rate", "idle", "release") else None
        conn.send(handler(*arguments) if handler is not None else {"error": f"unknown command {kind!r}"})


class ProducerDaemon:
    """``burrow-producer --config FILE``, as systemd runs it (without socket activation here)."""

    def __init__(self, workdir: Path, amqp_url: str, topology: TopologyConfig) -> None:
        password_file = workdir / "http-api-producer.password"
        password_file.touch(mode=0o600)
        rabbitmq = RabbitMQConfig.from_url(amqp_url, connection_name="bench-http-api-producer")
        password_file.write_text(rabbitmq.password)
        self.socket_path = str(workdir / "producer.sock")
        config = BurrowConfig(
            rabbitmq=dataclasses.replace(rabbitmq, password="", password_file=str(password_file)),
            topology=topology,
            producer=ProducerConfig(instance_id=f"bench-http-{uuid.uuid4().hex[:8]}", socket=self.socket_path,
                                    socket_mode=0o600),
        )
        config_path = workdir / "http-api-producer.toml"
        config_path.touch(mode=0o600)
        config_path.write_text(to_toml(config))
        self.log_path = workdir / "http-api-producer.log"
        executable = shutil.which("burrow-producer") or str(Path(sys.executable).parent / "burrow-producer")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([executable, "--config", str(config_path)],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.pid = self.process.pid

    def wait_ready(self) -> None:
        """Poll ``/v1/health`` until it says 200 (broker connected, API served)."""
        client = SocketClient(self.socket_path, timeout=5)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"burrow-producer exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            with contextlib.suppress(OSError, ValueError):
                if client.health().get("broker_connected"):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"burrow-producer not ready after {READY_TIMEOUT:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        clients.stop_gracefully(self.process)


@dataclasses.dataclass
class HttpSystem:
    """The HTTP API system: consumer, producer daemon and load client (``harness.RunningSystem``'s shape)."""

    name: str
    server: Any  # harness.BurrowConsumerProcess
    daemon: ProducerDaemon
    client: Any  # harness.Child running http_client_main

    @property
    def pids(self) -> dict[str, int]:
        return {"producer": self.daemon.pid, "consumer": self.server.pid, "client": self.client.pid}

    def stop(self) -> None:
        self.client.stop()
        self.daemon.stop()
        self.server.stop()


def start_system(broker: LocalBroker, workdir: Path, consumer_factory: Callable[..., Any], child_factory: Callable[..., Any],
                 topology: TopologyConfig) -> HttpSystem:
    """Consumer, then the daemon once the consumer consumes, then the load client; all stopped on failure."""
    server = consumer_factory(workdir, HTTP_API, broker.amqp_url, topology)
    daemon = client = None
    try:
        server.wait_ready()
        daemon = ProducerDaemon(workdir, broker.amqp_url, topology)
        daemon.wait_ready()
        client = child_factory(f"{HTTP_API}-client", http_client_main, daemon.socket_path)
        client.wait_ready()
    except BaseException:
        if client is not None:
            client.stop(graceful=False)
        if daemon is not None:
            daemon.stop()
        server.stop()
        raise
    return HttpSystem(HTTP_API, server, daemon, client)


def measure_extras(systems: dict[str, Any], measure_rate: Callable[[Any, float, int], dict[str, Any]],
                   rss_kib: Callable[[int], int]) -> dict[str, Any]:
    """The issue's own figures: both paths at 1,000 req/s with at most :data:`TARGET_CONNECTIONS`
    in flight each, the daemon's RSS with idle connections."""
    extras: dict[str, Any] = {"rate": {}, "rate_in_flight": TARGET_CONNECTIONS}
    for name in (HTTP_API, LIBRARY):
        if name in systems:
            extras["rate"][name] = measure_rate(systems[name], TARGET_RATE, TARGET_CONNECTIONS)
    system = systems.get(HTTP_API)
    if system is not None:
        before = rss_kib(system.daemon.pid)
        opened = system.client.command("idle", IDLE_CONNECTIONS, timeout=120)
        held = rss_kib(system.daemon.pid)
        system.client.command("release", timeout=60)
        extras["idle_connections"] = {"connections": IDLE_CONNECTIONS, "answered": opened["ok"],
                                      "producer_kib_before": before, "producer_kib_held": held}
    return extras


def describe_extras(extras: dict[str, Any]) -> str:
    """One progress line: p99 of both paths at the fixed rate, the daemon's RSS with idle connections."""
    parts = []
    for name, result in extras["rate"].items():
        p99 = percentile(sorted(result["latencies"]), 0.99) * 1000
        parts.append(f"{name} p99 {p99:.2f} ms at {TARGET_RATE:.0f} req/s ({result['failed']} failed)")
    idle = extras.get("idle_connections")
    if idle:
        parts.append(f"daemon RSS {idle['producer_kib_before'] / 1024:.1f} -> {idle['producer_kib_held'] / 1024:.1f} MiB "
                     f"with {idle['connections']} idle connections")
    return "; ".join(parts)


def markdown_lines(summary: dict[str, Any], labels: dict[str, str]) -> list[str]:
    """What only the HTTP API row has: the load client's CPU, both paths at 1,000 req/s."""
    throughput = summary["throughput"].get(HTTP_API)
    if not throughput:
        return []
    lines = ["", "HTTP API: CPU ms per request of the producer daemon / consumer / broker / load client, by keep-alive "
             "connections (requests in flight): " + "; ".join(
                 f"{level}: " + " / ".join(f"{row['cpu_ms_per_request'].get(role, 0):.3f}"
                                           for role in ("producer", "consumer", "broker", "client"))
                 for level, row in throughput.items()) + "."]
    rates = (summary.get("http_api") or {}).get("rate", {})
    if rates:
        lines += ["", f"At {TARGET_RATE:.0f} req/s (open loop), latency in ms:", "",
                  "| system | p50 | p90 | p99 | max | CPU ms per request: producer / consumer / broker |", "|---|---|---|---|---|---|"]
        for name, r in rates.items():
            cpu = r["cpu_ms_per_request"]
            lines.append(f"| {labels.get(name, name)} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{r['max_ms']:.1f} | {cpu['producer']:.3f} / {cpu['consumer']:.3f} / {cpu['broker']:.3f} |")
    idle = (summary.get("http_api") or {}).get("idle_connections")
    if idle:
        lines += ["", f"Producer daemon RSS with {idle['connections']} idle keep-alive connections open: "
                  f"{idle['producer_kib_before'] / 1024:.1f} -> {idle['producer_kib_held'] / 1024:.1f} MiB."]
    return lines


__all__ = ["HTTP_API", "LABEL", "HttpDriver", "HttpSystem", "describe_extras", "http_client_main", "markdown_lines", "measure_extras",
           "open_loop", "start_system", "targets"]
