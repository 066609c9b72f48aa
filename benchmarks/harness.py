"""The benchmark run: one throwaway broker, four systems measured interleaved, results written out.

:func:`run_benchmark` starts a :class:`~burrow.tools.localbroker.LocalBroker`, then for each system a
consumer process and a client process (see :mod:`benchmarks.clients`), and measures, round after
round, every concurrency level of every system in turn (A B C A B C ...), so that a slow moment
of this shared machine hits all systems alike instead of one. The floor and the RPC ceiling, the
bounds of two targets, are measured in each round right after the level they bound. Then it
measures latency at a fixed rate of half each system's peak, and finally, with fresh processes,
each system's memory after the first and the last requests of a long run. :mod:`benchmarks.report`
turns the collected dictionary into JSON, a markdown table and a PNG.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from burrow.tools.burst import percentile
from burrow.config import BurrowConfig, ConsumerConfig, RabbitMQConfig, TopologyConfig, to_toml
from burrow.tools.localbroker import LocalBroker

from benchmarks import asyncbench, clients, httpbench, peers
from benchmarks.peers import PeerProcess

logger = logging.getLogger(__name__)

RELIABLE = "burrow-reliable"
DIRECT = "burrow-direct"
BASELINE = "baseline"
CEILING = "ceiling"
FLOOR = "floor"
#: The request/response systems, in the order each round measures them.
RPC_SYSTEMS = (RELIABLE, DIRECT, BASELINE, httpbench.HTTP_API)
#: --peers: what users would otherwise use, each in its own venv (benchmarks/peers/).
PEER_SYSTEMS = tuple(peers.PEERS)
#: The open-loop rate of the p99 target (requests per second), measured for burrow's two modes.
TARGET_RATE = 2000.0


@dataclasses.dataclass(frozen=True)
class BurrowVariant:
    """How one burrow system differs from the defaults: reply mode, request queue type, prefetch,
    the consumer's handler and its concurrency."""

    direct: bool = False
    queue_type: str = "quorum"
    prefetch: int = 0  # 0: the default (4 x consumer.concurrency)
    handler: str = ""  # "": the default (burrow.handlers:echo)
    concurrency: int = 0  # 0: the default (8)


BURROW_SYSTEMS = {
    RELIABLE: BurrowVariant(),
    DIRECT: BurrowVariant(direct=True),
    # --variants: one setting changed each, to show what bounds the defaults (not part of the
    # targets). With 8 workers the default window is 64; 32 and 16 were the defaults before.
    "reliable-prefetch16": BurrowVariant(prefetch=16),
    "direct-prefetch16": BurrowVariant(direct=True, prefetch=16),
    "reliable-prefetch32": BurrowVariant(prefetch=32),
    "direct-prefetch32": BurrowVariant(direct=True, prefetch=32),
    "reliable-classic-queue": BurrowVariant(queue_type="classic"),
    # The same I/O-bound work in an async and a sync handler (benchmarks/asyncbench.py).
    asyncbench.ASYNC_HANDLER: BurrowVariant(handler="benchmarks.handlers:sleep_10ms", concurrency=asyncbench.IN_FLIGHT),
    asyncbench.SYNC_HANDLER: BurrowVariant(handler="benchmarks.handlers:sync_sleep_10ms"),
}
VARIANTS = ("reliable-prefetch16", "direct-prefetch16", "reliable-prefetch32", "direct-prefetch32", "reliable-classic-queue")
BASELINE_QUEUE = "bench.baseline.rpc_queue"
CEILING_QUEUE = "bench.ceiling"
#: Seconds a child process may take to connect and say it is ready.
READY_TIMEOUT = 60.0
#: The repository root, on the consumers' import path so that they can load handlers of benchmarks/.
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one run measures; :meth:`full` and :meth:`quick` are the two presets."""

    mode: str
    rounds: int
    count: int  # requests per throughput measurement
    concurrencies: tuple[int, ...]
    max_seconds: float  # time cap of one throughput measurement (the count is then not reached)
    single_seconds: float  # the same cap at 1 in flight, where no system gets near the count here
    ceiling_count: int
    rate_seconds: float  # length of the fixed-rate latency measurement
    rss_counts: tuple[int, int]  # RSS is read after this many requests, then after this many
    rss_concurrency: int
    rss_max_seconds: float
    warmup: int

    @classmethod
    def full(cls) -> "Settings":
        return cls(mode="full", rounds=2, count=20_000, concurrencies=(1, 16, 64, 256), max_seconds=10.0, single_seconds=6.0,
                   ceiling_count=60_000, rate_seconds=10.0, rss_counts=(20_000, 200_000), rss_concurrency=256,
                   rss_max_seconds=90.0, warmup=1_000)

    @classmethod
    def quick(cls) -> "Settings":
        return cls(mode="quick", rounds=1, count=5_000, concurrencies=(1, 16, 64, 256), max_seconds=3.0, single_seconds=3.0,
                   ceiling_count=20_000, rate_seconds=3.0, rss_counts=(2_000, 20_000), rss_concurrency=256,
                   rss_max_seconds=15.0, warmup=500)


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` used so far (all threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured_command(system: "RunningSystem", broker_pid: int, *command: Any, timeout: float) -> dict[str, Any]:
    """Run one client command and add the CPU milliseconds per answered request of the producer,
    the consumer and the broker: unlike wall-clock rates, these barely move when other work
    shares the machine, so they show where the time goes."""
    pids = {**system.pids, "broker": broker_pid}
    before = {role: cpu_seconds(pid) for role, pid in pids.items()}
    result = system.client.command(*command, timeout=timeout)
    answered = max(1, result["ok"])
    result["cpu_ms_per_request"] = {role: round((cpu_seconds(pid) - before[role]) * 1000 / answered, 4)
                                    for role, pid in pids.items()}
    return result


class Progress:
    """One line per measurement on stderr: ``[ 7/31] round 1 burrow-direct c=16 ...``."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()

    def step(self, text: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        print(f"[{self.done:>2}/{self.total}] {elapsed:6.1f}s  {text}", file=sys.stderr, flush=True)

    @staticmethod
    def note(text: str) -> None:
        print(f"        {text}", file=sys.stderr, flush=True)


class Child:
    """A spawned process running one of the ``clients.*_main`` functions, driven over a pipe."""

    _context = multiprocessing.get_context("spawn")

    def __init__(self, name: str, target: Callable[..., None], *args: Any) -> None:
        self.name = name
        self._conn, child_conn = self._context.Pipe()
        self.process = self._context.Process(target=target, args=(child_conn, *args), name=name, daemon=True)
        self.process.start()
        child_conn.close()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def receive(self, timeout: float) -> dict[str, Any]:
        """The child's next message; raise if it sends none within ``timeout`` or reports an error."""
        if not self._conn.poll(timeout):
            raise RuntimeError(f"{self.name} (pid {self.pid}) sent nothing within {timeout:.0f}s")
        message = self._conn.recv()
        if "error" in message:
            raise RuntimeError(f"{self.name}: {message['error']}")
        return message

    def wait_ready(self) -> None:
        self.receive(READY_TIMEOUT)

    def command(self, *command: Any, timeout: float) -> dict[str, Any]:
        self._conn.send(command)
        return self.receive(timeout)

    def stop(self, graceful: bool = True) -> None:
        """Ask a client to disconnect (``graceful``) or SIGTERM a server, then make sure it is gone."""
        if not graceful:
            self.process.terminate()
        elif self.process.is_alive():
            with contextlib.suppress(OSError, RuntimeError):
                self._conn.send(("stop",))
                self.receive(15)
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(10)
        self._conn.close()


class BurrowConsumerProcess:
    """``burrow-consumer --config FILE``, as systemd runs it, with this system's topology.

    The config file and the password file it points to are owner-only, in a private folder.
    """

    def __init__(self, workdir: Path, name: str, amqp_url: str, topology: TopologyConfig, prefetch: int = 0,
                 hosts: tuple[str, ...] = (), consumer: ConsumerConfig | None = None) -> None:
        password_file = workdir / f"{name}.password"
        password_file.touch(mode=0o600)
        rabbitmq = RabbitMQConfig.from_url(amqp_url, connection_name=f"bench-{name}-consumer", hosts=hosts)
        password_file.write_text(rabbitmq.password)
        config = BurrowConfig(
            rabbitmq=dataclasses.replace(rabbitmq, password="", password_file=str(password_file)),
            topology=topology,
            consumer=consumer or ConsumerConfig(prefetch=prefetch),
        )
        self.config_path = workdir / f"{name}-consumer.toml"
        self.config_path.touch(mode=0o600)
        self.config_path.write_text(to_toml(config))
        self.log_path = workdir / f"{name}-consumer.log"
        executable = shutil.which("burrow-consumer") or str(Path(sys.executable).parent / "burrow-consumer")
        import_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([executable, "--config", str(self.config_path)], env={**os.environ, "PYTHONPATH": import_path},
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.pid = self.process.pid

    def wait_ready(self) -> None:
        """Poll the consumer's log for its ready line; fail with the log if it exits first."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"burrow-consumer exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            if "Consumer ready" in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"burrow-consumer not ready after {READY_TIMEOUT:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        clients.stop_gracefully(self.process)


def variant_consumer(variant: BurrowVariant) -> ConsumerConfig:
    """The ``[consumer]`` section of a burrow system: the defaults but what ``variant`` sets."""
    changed: dict[str, Any] = {"prefetch": variant.prefetch}
    if variant.handler:
        changed["handler"] = variant.handler
    if variant.concurrency:
        changed["concurrency"] = variant.concurrency
    return ConsumerConfig(**changed)


def topology_for(system: str) -> TopologyConfig:
    """Exchange and queue names of one burrow system (its own, so systems never mix)."""
    prefix = f"bench.{system.removeprefix('burrow-')}"
    return TopologyConfig.prefixed(prefix, queue_type=BURROW_SYSTEMS[system].queue_type)


@dataclasses.dataclass
class RunningSystem:
    """One request/response system under test: its server process and its client process."""

    name: str
    server: BurrowConsumerProcess | Child | PeerProcess
    client: Child | PeerProcess

    @property
    def pids(self) -> dict[str, int]:
        return {"producer": self.client.pid, "consumer": self.server.pid}

    def stop(self) -> None:
        self.client.stop()
        if isinstance(self.server, Child):
            self.server.stop(graceful=False)
        else:
            self.server.stop()


def start_system(name: str, broker: LocalBroker, workdir: Path) -> RunningSystem:
    """Start ``name``'s consumer, wait until it consumes, then its client; both in new processes."""
    if name == httpbench.HTTP_API:
        return httpbench.start_system(broker, workdir, BurrowConsumerProcess, Child,  # type: ignore[return-value]
                                      TopologyConfig.prefixed("bench.http-api"))
    url = broker.amqp_url
    server: BurrowConsumerProcess | Child | PeerProcess
    if name in peers.PEERS:
        server = PeerProcess(name, "server", url, workdir / f"{name}-server.log")
    elif name == BASELINE:
        server = Child(f"{name}-server", clients.baseline_server_main, url, BASELINE_QUEUE)
    else:
        variant = BURROW_SYSTEMS[name]
        server = BurrowConsumerProcess(workdir, name, url, topology_for(name), consumer=variant_consumer(variant))
    client: Child | PeerProcess | None = None
    try:
        server.wait_ready()
        if name in peers.PEERS:
            client = PeerProcess(name, "client", url, workdir / f"{name}-client.log")
        elif name == BASELINE:
            client = Child(f"{name}-client", clients.baseline_client_main, url, BASELINE_QUEUE)
        else:
            client = Child(f"{name}-client", clients.burrow_client_main, url, dataclasses.asdict(topology_for(name)),
                           variant.direct, f"bench-{uuid.uuid4().hex[:8]}")
        client.wait_ready()
    except BaseException:
        # Not yet in running_systems' list: stop what this call started before passing the error on.
        if client is not None:
            client.stop(graceful=False)
        if isinstance(server, Child):
            server.stop(graceful=False)
        else:
            server.stop()
        raise
    return RunningSystem(name, server, client)


@contextlib.contextmanager
def running_systems(names: tuple[str, ...], broker: LocalBroker, workdir: Path) -> Iterator[dict[str, RunningSystem]]:
    systems: dict[str, RunningSystem] = {}
    try:
        for name in names:
            systems[name] = start_system(name, broker, workdir)
        yield systems
    finally:
        for system in systems.values():
            system.stop()


def measure_ceiling(broker: LocalBroker, count: int, max_seconds: float) -> dict[str, Any]:
    """One-way msg/s: a pika publisher process and an auto-ack consumer process, transient, no
    confirms; with the CPU milliseconds per message of each and of the broker, as for the systems."""
    consumer = Child("ceiling-consumer", clients.ceiling_consumer_main, broker.amqp_url, CEILING_QUEUE, count, max_seconds)
    try:
        consumer.wait_ready()
        broker_cpu = cpu_seconds(broker.os_pid())
        publisher = Child("ceiling-publisher", clients.ceiling_publisher_main, broker.amqp_url, CEILING_QUEUE, count, max_seconds)
        try:
            sent = publisher.receive(max_seconds + READY_TIMEOUT)
        finally:
            publisher.process.join(10)
        received = consumer.receive(max_seconds + READY_TIMEOUT)
        broker_cpu = cpu_seconds(broker.os_pid()) - broker_cpu
    finally:
        consumer.process.join(10)
        if consumer.process.is_alive():
            consumer.process.terminate()
    elapsed = received["last"] - sent["started"]
    messages = max(1, received["received"])
    return {
        "sent": sent["sent"],
        "received": received["received"],
        "elapsed": elapsed,
        "publish_rate": sent["sent"] / (sent["published"] - sent["started"]),
        "rate": received["received"] / elapsed if elapsed > 0 else 0.0,
        "cpu_ms_per_message": {role: round(seconds * 1000 / messages, 4) for role, seconds in
                               (("publisher", sent["cpu"]), ("consumer", received["cpu"]), ("broker", broker_cpu))},
    }


def speed_probe() -> float:
    """Milliseconds a fixed pure-Python loop takes in this process, best of three.

    Taken between measurements, when burrow's processes are idle: on a virtual machine the host
    can lend fewer cycles at one moment than another, which a load average does not show; the
    spread of these probes over a run says how far the machine's own speed moved.
    """
    best = float("inf")
    for _ in range(3):
        begin = time.perf_counter()
        total = 0
        for number in range(300_000):
            total += number * number % 7
        best = min(best, time.perf_counter() - begin)
    return round(best * 1000, 2)


def measure_floor(broker: LocalBroker, settings: Settings) -> dict[str, Any]:
    """Latency at one in flight of the thinnest pika client and server with burrow's reliable-mode
    guarantees (:class:`clients.FloorClient`): what the broker's share of one request costs."""
    server = Child("floor-server", clients.floor_server_main, broker.amqp_url)
    try:
        server.wait_ready()
        client = Child("floor-client", clients.floor_client_main, broker.amqp_url)
        try:
            client.wait_ready()
            client.command("closed", settings.warmup // 4, 1, settings.single_seconds, False, timeout=settings.single_seconds + 60)
            system = RunningSystem(FLOOR, server, client)
            return measured_command(system, broker.os_pid(), "closed", settings.count, 1, settings.single_seconds,
                                    timeout=settings.single_seconds + 60)
        finally:
            client.stop()
    finally:
        server.stop(graceful=False)


def machine_info(broker: LocalBroker) -> dict[str, Any]:
    """What the numbers were measured on (the README quotes it next to the table)."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])

    def package_version(package: str) -> str:
        result = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True, check=False)
        return result.stdout.strip() or "unknown"

    import pika

    return {
        "hostname": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _os_release(),
        "python": platform.python_version(),
        "pika": pika.__version__,
        "rabbitmq": package_version("rabbitmq-server"),
        "erlang": package_version("erlang-base"),
        "broker_data_dir": str(broker.dir),
    }


def _os_release() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return platform.platform()


class Profiler:
    """Optional ``py-spy record`` of chosen processes around one measurement (``--profile``).

    Samples are written as collapsed stacks (``profile-<label>-<role>.folded``: one line per
    distinct stack with its sample count; speedscope and flamegraph.pl read them) and summarised
    by :func:`profile_summary` into the run's results.
    """

    def __init__(self, py_spy: str | None, out_dir: Path) -> None:
        self._py_spy = py_spy
        self._out_dir = out_dir
        self.files: dict[str, Path] = {}

    @contextlib.contextmanager
    def record(self, label: str, pids: dict[str, int]) -> Iterator[None]:
        """Sample every pid of ``pids`` while the block runs (idle threads excluded)."""
        if self._py_spy is None:
            yield
            return
        processes = []
        for role, pid in pids.items():
            out = self._out_dir / f"profile-{label}-{role}.folded"
            self.files[f"{label}-{role}"] = out
            processes.append(subprocess.Popen([self._py_spy, "record", "--pid", str(pid), "--threads", "--rate", "250",
                                               "--format", "raw", "--output", str(out), "--nonblocking"],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            yield
        finally:
            for process in processes:
                process.send_signal(signal.SIGINT)
            for process in processes:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)


def profile_summary(path: Path, top: int = 15) -> dict[str, Any]:
    """Per thread the share of samples, and the functions with the most samples on top (self)
    and anywhere on the stack (inclusive), from a collapsed-stack file of ``py-spy --format raw``."""
    threads: dict[str, int] = {}
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        threads[frames[0]] = threads.get(frames[0], 0) + count
        # "name (path/to/file.py:123)" -> "name (file.py)": one entry per function, not per line.
        functions = [re.sub(r" \((?:.*/)?([^/]+?):\d+\)$", r" (\1)", frame) for frame in frames[1:]]
        if functions:
            own[functions[-1]] = own.get(functions[-1], 0) + count
        for function in set(functions):
            inclusive[function] = inclusive.get(function, 0) + count

    def share(table: dict[str, int]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": total, "threads_pct": share(threads), "self_pct": share(own), "inclusive_pct": share(inclusive)}


def run_benchmark(settings: Settings, out_dir: Path, py_spy: str | None = None, variants: bool = False,
                  with_peers: bool = False) -> dict[str, Any]:
    """Measure everything the issue asks for and return it as one JSON-ready dictionary.

    With ``variants`` the burrow variants of :data:`VARIANTS` join the throughput rounds, with
    ``with_peers`` the peers of :data:`PEER_SYSTEMS` (their venvs are built first).
    """
    levels = settings.concurrencies
    if with_peers:
        for name in PEER_SYSTEMS:
            peers.peer_python(name)
    measured = RPC_SYSTEMS + (VARIANTS if variants else ()) + (PEER_SYSTEMS if with_peers else ())
    burrow_modes = (RELIABLE, DIRECT)
    total_steps = (settings.rounds * (len(levels) * len(measured) + 2 + len(asyncbench.SYSTEMS)) + 2 * len(measured)
                   + len(burrow_modes) + len(RPC_SYSTEMS) * 2 + 1)
    progress = Progress(total_steps)
    profiler = Profiler(py_spy, out_dir)
    results: dict[str, Any] = {
        "settings": dataclasses.asdict(settings),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_before": os.getloadavg(),
        "note": "measured on a machine shared with other work (other builds and tests ran at the same time)",
        "throughput": {name: {str(c): [] for c in levels} for name in measured},
        "ceiling": [],
        "floor": [],
        "fixed_rate": {},
        "same_rate": {},
        "target_rate": {},
        "rss": {},
        "speed_probe_ms": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="burrow-bench-"))
    try:
        with LocalBroker(name=f"burrow-bench-{os.getpid()}") as broker:
            results["machine"] = machine_info(broker)
            Progress.note(f"broker {broker.nodename} on 127.0.0.1:{broker.port}, data in {broker.dir}")
            with running_systems(measured, broker, workdir) as systems:
                for system in systems.values():
                    Progress.note(f"{system.name}: pids {system.pids}")
                    # Peer clients keep one connection per thread: warm them at the highest
                    # concurrency, so that no measurement pays for connecting.
                    warm = max(levels) if system.name in PEER_SYSTEMS else 16
                    system.client.command("closed", max(settings.warmup, warm), warm, settings.max_seconds,
                                          timeout=settings.max_seconds + 120)
                for round_number in range(1, settings.rounds + 1):
                    results["speed_probe_ms"].append(speed_probe())
                    for concurrency in levels:
                        for name, system in systems.items():
                            profiling = py_spy is not None and round_number == 1 and concurrency == max(levels)
                            with profiler.record(f"{name}-c{concurrency}", system.pids) if profiling else contextlib.nullcontext():
                                cap = settings.single_seconds if concurrency == 1 else settings.max_seconds
                                result = measured_command(system, broker.os_pid(), "closed", settings.count, concurrency,
                                                          cap, timeout=cap + 60)
                            result["round"] = round_number
                            results["throughput"][name][str(concurrency)].append(result)
                            progress.step(f"round {round_number} {name:<16} c={concurrency:<4} {_describe(result)}")
                            if name == RELIABLE and concurrency == 1:
                                # The floor right after the run it is the bound of: this VM's speed
                                # drifts by a quarter or more within minutes, which at the end of the
                                # round moved the ratio both ways by more than the bound's margin.
                                floor = measure_floor(broker, settings)
                                floor["round"] = round_number
                                results["floor"].append(floor)
                                progress.step(f"round {round_number} {FLOOR:<16} c=1    {_describe(floor)}")
                    ceiling = measure_ceiling(broker, settings.ceiling_count, settings.max_seconds * 2)
                    ceiling["round"] = round_number
                    results["ceiling"].append(ceiling)
                    progress.step(f"round {round_number} {CEILING:<16} one-way {ceiling['received']} msgs "
                                  f"{ceiling['rate']:8.0f} msg/s (RPC ceiling {ceiling['rate'] / 2:.0f} req/s)")
                half_peaks = {name: max(1.0, max(statistics.median(r["ok"] / r["elapsed"] for r in runs)
                                                 for runs in results["throughput"][name].values()) / 2)
                              for name in systems}
                # Each system at half of its own peak (the target), then every system at
                # one common rate, the lowest half peak, to compare tails under the same load.
                common = min(half_peaks[name] for name in RPC_SYSTEMS)
                for kind, rates in (("fixed_rate", half_peaks), ("same_rate", dict.fromkeys(systems, common))):
                    for name, system in systems.items():
                        result = measure_rate(system, broker, rates[name], settings)
                        results[kind][name] = result
                        progress.step(f"{kind.replace('_', ' ')} {name:<16} {rates[name]:6.0f} req/s {_describe(result)} "
                                      f"cores busy {result['cores_busy']:.2f}")
                # The p99 target's open loop, at a rate fixed by the target instead of by the run.
                for name in burrow_modes:
                    result = measure_rate(systems[name], broker, TARGET_RATE, settings)
                    results["target_rate"][name] = result
                    progress.step(f"target rate {name:<16} {TARGET_RATE:6.0f} req/s {_describe(result)} "
                                  f"cores busy {result['cores_busy']:.2f}")
                results["http_api"] = httpbench.measure_extras(
                    systems, lambda system, rate, in_flight: measure_rate(system, broker, rate, settings, in_flight), rss_kib)
                progress.step(f"HTTP API extras: {httpbench.describe_extras(results['http_api'])}")
            results["async_handlers"] = measure_async_handlers(broker, workdir, settings, progress)
            for name in RPC_SYSTEMS:
                results["rss"][name] = measure_memory(name, broker, workdir, settings, progress)
            results["speed_probe_ms"].append(speed_probe())
        results["profiles"] = {label: profile_summary(path) for label, path in profiler.files.items() if path.exists()}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["loadavg_after"] = os.getloadavg()
    results["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return results


def measure_async_handlers(broker: LocalBroker, workdir: Path, settings: Settings, progress: Progress) -> dict[str, list[dict[str, Any]]]:
    """The async and the sync handler of :mod:`benchmarks.asyncbench` at its fixed number in flight,
    alternating in each round; their processes run only for this."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in asyncbench.SYSTEMS}
    with running_systems(asyncbench.SYSTEMS, broker, workdir) as systems:
        for system in systems.values():
            system.client.command("closed", settings.warmup, 16, settings.max_seconds, timeout=settings.max_seconds + 120)
        for round_number in range(1, settings.rounds + 1):
            for name, system in systems.items():
                result = measured_command(system, broker.os_pid(), "closed", settings.count, asyncbench.IN_FLIGHT,
                                          settings.max_seconds, timeout=settings.max_seconds + 60)
                result["round"] = round_number
                runs[name].append(result)
                progress.step(f"round {round_number} {name:<16} c={asyncbench.IN_FLIGHT:<4} {_describe(result)}")
    return runs


def measure_rate(system: RunningSystem, broker: LocalBroker, rate: float, settings: Settings,
                 in_flight: int | None = None) -> dict[str, Any]:
    """Open loop at ``rate`` requests per second for ``settings.rate_seconds``; with ``in_flight``,
    the client never has more outstanding (a request due beyond it waits, and its wait counts)."""
    count = min(settings.count, int(rate * settings.rate_seconds) + 1)
    limit = () if in_flight is None else (in_flight,)
    result = measured_command(system, broker.os_pid(), "rate", count, rate, settings.rate_seconds + 1, *limit,
                              timeout=settings.rate_seconds + 60)
    result["rate"] = rate
    # How much of the machine the three processes used at this rate: the tail follows it
    # (requests queue for a core), so the report shows it next to the p99.
    result["cores_busy"] = sum(result["cpu_ms_per_request"].values()) * result["ok"] / 1000 / result["elapsed"]
    return result


def measure_memory(name: str, broker: LocalBroker, workdir: Path, settings: Settings, progress: Progress) -> dict[str, Any]:
    """Fresh processes; RSS of both after the first ``rss_counts[0]`` requests and after the rest."""
    first, total = settings.rss_counts
    with running_systems((name,), broker, workdir) as systems:
        system = systems[name]
        samples: dict[str, Any] = {"concurrency": settings.rss_concurrency}
        done = 0
        for label, target in (("first", first), ("last", total)):
            result = system.client.command("closed", target - done, settings.rss_concurrency, settings.rss_max_seconds, False,
                                           timeout=settings.rss_max_seconds + 60)
            done += result["ok"] + result["failed"]
            samples[label] = {"requests": done, "failed": result["failed"], "rate": result["ok"] / result["elapsed"],
                              **{f"{role}_kib": rss_kib(pid) for role, pid in system.pids.items()}}
            progress.step(f"memory {name:<16} after {done:>6} requests: producer {samples[label]['producer_kib'] / 1024:.1f} MiB, "
                          f"consumer {samples[label]['consumer_kib'] / 1024:.1f} MiB ({samples[label]['rate']:.0f} req/s)")
        return samples


def _describe(result: dict[str, Any]) -> str:
    ordered = sorted(result["latencies"])
    rate = result["ok"] / result["elapsed"] if result["elapsed"] else 0.0
    text = (f"{result['ok']:>6} ok {result['failed']} failed {result['elapsed']:5.1f}s {rate:7.0f} req/s "
            f"p50 {percentile(ordered, 0.5) * 1000:6.2f} ms p99 {percentile(ordered, 0.99) * 1000:6.2f} ms")
    if "cpu_ms_per_request" in result:
        text += "  CPU ms/req " + " ".join(f"{role} {ms:.3f}" for role, ms in result["cpu_ms_per_request"].items())
    return text
