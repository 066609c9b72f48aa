"""A throwaway RabbitMQ cluster of :class:`LocalBroker` nodes on loopback, for tests and benchmarks.

``LocalCluster(3)`` starts three nodes (each on its own free AMQP and distribution ports, in its
own folder), joins the second and later ones to the first with ``rabbitmqctl join_cluster``, and
waits until every node lists all of them as running. The nodes share the ``rabbitmq`` user's
Erlang cookie, so nothing needs setting up on one machine. Fault tests SIGKILL a node with
:meth:`kill` and bring it back with :meth:`restart`; it rejoins the cluster from its own data.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import time
import uuid
from types import TracebackType

from burrow.config import RabbitMQConfig
from burrow.tools.localbroker import LocalBroker, LocalBrokerError

logger = logging.getLogger(__name__)


class LocalCluster:
    """``size`` throwaway RabbitMQ nodes clustered together; use as a context manager."""

    def __init__(self, size: int = 3, name: str | None = None, start_timeout: float = 90.0) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.name = name or f"burrow-cluster-{uuid.uuid4().hex[:6]}"
        self.start_timeout = start_timeout
        self.nodes = [LocalBroker(name=f"{self.name}-{index}", start_timeout=start_timeout) for index in range(size)]

    @property
    def hosts(self) -> tuple[str, ...]:
        """The ``rabbitmq.hosts`` entries of every node (``127.0.0.1:port``)."""
        return tuple(f"127.0.0.1:{node.port}" for node in self.nodes)

    def rabbitmq_config(self, **overrides: object) -> RabbitMQConfig:
        """A client config listing every node, logging in as the nodes' default guest user."""
        values: dict[str, object] = {"hosts": self.hosts, "username": "guest", "password": "guest"}
        values.update(overrides)
        return RabbitMQConfig(**values)  # type: ignore[arg-type]

    def node_at(self, port: int) -> LocalBroker:
        """The node listening for AMQP on ``port``."""
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(f"no node of {self.name} listens on port {port}")

    def node_named(self, nodename: str) -> LocalBroker:
        """The node whose Erlang name is ``nodename`` (e.g. a queue's leader)."""
        for node in self.nodes:
            if node.nodename == nodename:
                return node
        raise KeyError(f"{nodename} is not a node of {self.name}")

    def start(self) -> "LocalCluster":
        """Start every node (in parallel), join them to the first, and wait for all to run."""
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            for future in [pool.submit(node.start) for node in self.nodes]:
                future.result()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.nodename)
            node.ctl("start_app")
        self.wait_running(len(self.nodes))
        logger.info("RabbitMQ cluster %s running: %s", self.name, ", ".join(self.hosts))
        return self

    def running_nodes(self, via: LocalBroker | None = None) -> list[str]:
        """Erlang names of the running cluster members, as ``via`` (default: any live node) sees them."""
        candidates = [via] if via is not None else [node for node in self.nodes if node.running]
        for node in candidates:
            result = node.ctl("cluster_status", "--formatter", "json", check=False, timeout=30)
            if result.returncode == 0:
                return sorted(json.loads(result.stdout)["running_nodes"])
        return []

    def wait_running(self, count: int, timeout: float | None = None) -> None:
        """Wait until ``count`` nodes run in the cluster; raise naming the ones that do after ``timeout``."""
        deadline = time.monotonic() + (timeout or self.start_timeout)
        running: list[str] = []
        while time.monotonic() < deadline:
            running = self.running_nodes()
            if len(running) >= count:
                return
            time.sleep(0.5)
        raise LocalBrokerError(f"cluster {self.name}: {len(running)} of {count} nodes running ({', '.join(running)})")

    def kill(self, node: LocalBroker) -> None:
        """SIGKILL ``node``'s Erlang VM, like a host losing power; its data stays for :meth:`restart`."""
        node.kill()

    def restart(self, node: LocalBroker) -> None:
        """Start a killed or stopped ``node`` again and wait until it is back in the cluster."""
        node.start()
        self.wait_running(sum(1 for other in self.nodes if other.running))

    def queue_leader(self, queue: str, vhost: str = "/") -> LocalBroker:
        """The node leading quorum queue ``queue`` (from ``rabbitmqctl list_queues``: AMQP cannot tell)."""
        for node in self.nodes:
            if not node.running:
                continue
            result = node.ctl("list_queues", "-p", vhost, "name", "leader", "--formatter", "json", check=False, timeout=30)
            if result.returncode != 0:
                continue
            for row in json.loads(result.stdout):
                if row["name"] == queue and row.get("leader"):
                    return self.node_named(row["leader"])
        raise KeyError(f"queue {queue!r} has no leader in cluster {self.name}")

    def connections(self, name: str) -> list[LocalBroker]:
        """The node of each client connection whose ``connection_name`` is ``name``, as the
        cluster lists them (one entry per connection)."""
        for node in self.nodes:
            if not node.running:
                continue
            result = node.ctl("list_connections", "port", "client_properties", "--formatter", "json",
                              check=False, timeout=30)
            if result.returncode != 0:
                continue
            found = []
            for row in json.loads(result.stdout):
                properties = {entry[0]: entry[2] for entry in row["client_properties"]}
                if properties.get("connection_name") == name:
                    found.append(self.node_at(int(row["port"])))
            return found
        return []

    def close(self) -> None:
        """Stop every node and remove its folder (a failure on one still closes the others)."""
        errors: list[BaseException] = []
        for node in self.nodes:
            try:
                node.close()
            except BaseException as exc:  # close the rest first, then report
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> "LocalCluster":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
