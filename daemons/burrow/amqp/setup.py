"""``RabbitMQSetup``: one AMQP connection and channel, kept open with backoff, topology declared.

The producer and the consumer each own one or two of these on a shared pika ``IOLoop``. The
lifecycle follows pika's asynchronous examples as named steps: ``connect`` ->
``on_connection_open`` -> ``on_channel_open`` -> topology declared -> the owner's ``on_ready``.
Any loss (failed connect, closed connection, closed channel) reports ``on_lost`` and schedules a
reconnect after a capped, jittered exponential backoff, until ``stop`` is called.

With several broker nodes (``rabbitmq.hosts``) each ``RabbitMQSetup`` walks its own random order
of them: the first connect goes to a node picked at random, so clients spread over the cluster,
and every reconnect goes to the next node of that order, so losing a node fails over to the
others at the same backoff. Which node it uses and how often it moved are in :meth:`link`, the
logs and the ``burrow_broker_*`` metrics.

A channel that first publishes to a quorum queue while that queue's leader is being re-elected
(right after a node died, i.e. right after a failover) stays bound to the dead leader on RabbitMQ
3.10: every later publish to that queue is nacked, or never confirmed at all, until the channel
closes (newer releases look the leader up afresh, rabbitmq-server pull request 9241). So the
publishing engines report their confirms: a nack before the fresh channel's first ack, or no
confirm for ``CONFIRM_STALL`` seconds, reopens the connection, and the engine publishes what
was not confirmed again on the new one, as after any reconnect. Only on brokers that need it
(``burrow.amqp.brokerversion``: before 3.13, not on RabbitMQ 4.0), by the version each connection reports.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pika
from pika.adapters.select_connection import IOLoop
from pika.channel import Channel

from burrow import metrics
from burrow.amqp.brokerversion import describe_broker, needs_stale_leader_workaround
from burrow.amqp.gather import gather_writes
from burrow.amqp.iothread import call_every
from burrow.amqp.parameters import connection_parameters, default_connection_name
from burrow.config import BrokerNode, RabbitMQConfig, TopologyConfig
from burrow.topology import declare_topology

logger = logging.getLogger(__name__)

#: Seconds a connection must stay ready before losing it starts the reconnect backoff afresh.
STABLE_AFTER = 5.0

#: Seconds a publish may wait for its confirm before the channel is presumed stuck and the
#: connection reopened (see :meth:`RabbitMQSetup.publish_nacked`). Confirms take milliseconds,
#: about a second on a loaded machine; a blocked connection is left to blocked_connection_timeout.
CONFIRM_STALL = 10.0


@dataclass(frozen=True, slots=True)
class BrokerLink:
    """What one connection is doing, for logs, STATUS and metrics: ``role`` (e.g.
    "consumer-publish"), the ``node`` it uses or is trying, whether it is ``connected``, and how
    many ``failovers`` (becoming ready on another node than the last one) it made. The daemons
    put it into words with ``burrow.daemon.notify.broker_status``."""

    role: str
    node: BrokerNode
    connected: bool
    failovers: int


class RabbitMQSetup:
    """A reconnecting keeper of one connection, its channel and the topology, on ``ioloop``.

    :meth:`start` connects; from then on it keeps trying until :meth:`stop`: every loss (failed
    connect, closed connection, channel closed by the broker) reports ``on_lost(reason)`` and
    reconnects after a jittered backoff, and every fresh channel, once the topology (and the
    producer's ``reply_queue``) is declared, is handed to ``on_ready(channel)``. The owner sets up
    its consumers and confirms there and forgets the channel on ``on_lost``: a channel is never
    reused across connections. ``declare=False`` skips the declarations (the consumer's publishing
    connection); ``services`` names the service queues to declare besides the default one,
    ``partitions`` the number of queues of each split service (:mod:`burrow.partitions`).
    Everything runs on the I/O loop's thread.
    The connection goes to one of ``rabbitmq.nodes()`` at a time (module docstring). A publishing
    owner passes ``unconfirmed`` (how many of its publishes await a confirm) and reports confirms
    with :meth:`publish_acked` and :meth:`publish_nacked`, so a stuck channel gets reopened.
    """

    def __init__(
        self,
        rabbitmq: RabbitMQConfig,
        topology: TopologyConfig,
        ioloop: IOLoop,
        *,
        role: str,
        on_ready: Callable[[Channel], None],
        on_lost: Callable[[str], None],
        reply_queue: str | None = None,
        declare: bool = True,
        unconfirmed: Callable[[], int] = lambda: 0,
        services: tuple[str, ...] = (),
        partitions: Mapping[str, int] | None = None,
    ) -> None:
        self._rabbitmq = rabbitmq
        self._topology = topology
        self._ioloop = ioloop
        self._role = role
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._reply_queue = reply_queue
        self._declare = declare
        self._services = services
        self._partitions = dict(partitions or {})
        self._name = default_connection_name(role)
        self._use_nodes(rabbitmq)
        self._ready_node: BrokerNode | None = None
        self.failovers = 0
        self._connection: pika.SelectConnection | None = None
        self._channel: Channel | None = None
        self._stopping = False
        self._on_stopped: Callable[[], None] | None = None
        self._reconnect_handle: object | None = None
        self._failures = 0
        self._ready_since = 0.0
        self.reconnects = 0
        self.ready = False
        self._unconfirmed = unconfirmed
        self._acked = False
        self._last_confirm = 0.0
        self._blocked = False
        #: Whether the connected broker needs the stale-leader workaround (module docstring).
        self.stale_leader_workaround = True
        self._server: dict[str, Any] = {}
        self._stop_checks: Callable[[], None] | None = None

    def _use_nodes(self, rabbitmq: RabbitMQConfig) -> None:
        # This connection's own random order of the nodes: a random first node spreads clients
        # over the cluster; each reconnect moves on to the next one.
        nodes = rabbitmq.nodes()
        self._nodes = random.sample(nodes, len(nodes))
        self._parameters = {node: connection_parameters(rabbitmq, self._name, node) for node in self._nodes}
        self._cursor = 0

    def retarget(self, rabbitmq: RabbitMQConfig, topology: TopologyConfig, reply_queue: str | None) -> None:
        """From the next connection on use the nodes of ``rabbitmq`` and declare ``reply_queue``; close
        the current connection now, so the usual reconnect moves there (I/O thread)."""
        self._rabbitmq, self._topology, self._reply_queue = rabbitmq, topology, reply_queue
        self._use_nodes(rabbitmq)
        self._cursor = len(self._nodes) - 1  # the reconnect steps on to the first of the new order
        logger.info("%s: broker nodes now %s; reconnecting", self._role.capitalize(),
                    ", ".join(str(node) for node in rabbitmq.nodes()))
        if self._connection is not None and self._connection.is_open:
            self._connection.close(reply_text="burrow: broker nodes changed")

    @property
    def node(self) -> BrokerNode:
        """The node connected to, or being tried next."""
        return self._nodes[self._cursor]

    def link(self) -> BrokerLink:
        """A snapshot of this connection's node and failovers (safe to call from any thread)."""
        return BrokerLink(self._role, self.node, self.ready, self.failovers)

    def start(self) -> None:
        """Open the connection now; call only on the I/O thread (or before the loop starts)."""
        self._stop_checks = call_every(self._ioloop, 1.0, self._check_confirms)
        self._connect()

    def publish_acked(self) -> None:
        """The engine got a publisher ack on this connection's channel."""
        self._acked = True
        self._last_confirm = time.monotonic()

    def publish_nacked(self) -> bool:
        """The engine got a nack. Before the channel's first ack this is RabbitMQ 3.10's stale
        quorum queue leader (module docstring): reopen the connection and return True, and the
        engine keeps the nacked publishes to send again after the reconnect. Later nacks are the
        queue's own refusal (e.g. full, with reject-publish): False, the engine handles them."""
        self._last_confirm = time.monotonic()
        if self._acked or not self.ready or not self.stale_leader_workaround:
            return False
        self._reopen("the broker nacked the first publishes of a fresh channel")
        return True

    def _check_confirms(self) -> None:
        """Every second: reopen a connection whose publishes went unconfirmed for CONFIRM_STALL."""
        now = time.monotonic()
        if not self.ready or self._blocked or not self.stale_leader_workaround or self._unconfirmed() == 0:
            self._last_confirm = now
            return
        if now - self._last_confirm > CONFIRM_STALL:
            self._reopen(f"no publisher confirm for {CONFIRM_STALL:.0f}s with {self._unconfirmed()} outstanding")

    def _reopen(self, why: str) -> None:
        logger.warning("%s: %s on %s; reopening the connection (the channel may be bound to a quorum queue "
                       "leader that is gone)", self._role.capitalize(), why, self.node)
        self._last_confirm = time.monotonic()
        if self._connection is not None and self._connection.is_open:
            self._connection.close(reply_text=f"burrow: {why}")

    def _set_blocked(self, blocked: bool) -> None:
        self._blocked = blocked

    def _connect(self) -> None:
        self._reconnect_handle = None
        logger.debug("Connecting %s to %s", self._role, self.node)
        self._connection = pika.SelectConnection(
            parameters=self._parameters[self.node],
            on_open_callback=self.on_connection_open,
            on_open_error_callback=self.on_connection_open_error,
            on_close_callback=self.on_connection_closed,
            custom_ioloop=self._ioloop,
        )

    def on_connection_open(self, connection: pika.SelectConnection) -> None:
        logger.debug("Connection of %s open (gathered writes: %s); opening a channel", self._role,
                     gather_writes(connection))
        self._blocked = False
        self._server = connection.server_properties or {}
        self.stale_leader_workaround = needs_stale_leader_workaround(self._server)
        connection.add_on_connection_blocked_callback(lambda _c, _f: self._set_blocked(True))
        connection.add_on_connection_unblocked_callback(lambda _c, _f: self._set_blocked(False))
        connection.channel(on_open_callback=self.on_channel_open)

    def on_connection_open_error(self, _connection: pika.SelectConnection, error: BaseException) -> None:
        self._lost(f"cannot connect to {self.node}: {str(error) or repr(error)}")

    def on_connection_closed(self, _connection: pika.SelectConnection, reason: BaseException) -> None:
        self._channel = None
        if self._stopping:
            logger.debug("Connection of %s closed as asked", self._role)
            self._finish_stop()
            return
        self._lost(f"connection to {self.node} lost: {reason}")

    def on_channel_open(self, channel: Channel) -> None:
        self._channel = channel
        channel.add_on_close_callback(self.on_channel_closed)
        if self._declare:
            declare_topology(channel, self._topology, self._reply_queue, lambda: self.on_topology_declared(channel),
                             self._services, self._partitions)
        else:
            self.on_topology_declared(channel)

    def on_topology_declared(self, channel: Channel) -> None:
        node = self.node
        previous, self._ready_node = self._ready_node, node
        if previous is not None and previous != node:
            self.failovers += 1
            metrics.broker_failover(self._role)
            logger.warning("%s failed over from %s to %s (failover %d)", self._role.capitalize(), previous, node,
                           self.failovers)
        if not self.ready:
            logger.info("%s connected to %s (%s, stale quorum leader workaround %s)%s", self._role.capitalize(), node,
                        describe_broker(self._server), "on" if self.stale_leader_workaround else "off",
                        f" after {self._failures} failed attempts" if self._failures else "")
        metrics.broker_node(self._role, str(node))
        self.ready = True
        self._ready_since = self._last_confirm = time.monotonic()
        self._acked = False
        self._on_ready(channel)

    def on_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        """A channel closed under us (broker error, e.g. a refused declaration): start over."""
        self._channel = None
        if self._stopping:
            return
        logger.warning("%s channel closed by the broker: %s", self._role.capitalize(), reason)
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _lost(self, reason: str) -> None:
        was_ready = self.ready
        self.ready = False
        self._connection = None
        if self._stopping:
            self._finish_stop()
            return
        if was_ready and time.monotonic() - self._ready_since >= STABLE_AFTER:
            # Only a connection that stayed up resets the backoff: one refused right after
            # connecting (e.g. blocked again by a memory alarm that still lasts) must not turn into
            # a reconnect loop at the initial delay.
            self._failures = 0
        self._failures += 1
        delay = self._backoff_delay()
        log = logger.warning if was_ready or self._failures in (1, 10) or self._failures % 50 == 0 else logger.debug
        self._cursor = (self._cursor + 1) % len(self._nodes)
        log("%s: %s; retrying in %.1fs on %s (attempt %d)", self._role.capitalize(), reason, delay, self.node,
            self._failures)
        if was_ready:
            self.reconnects += 1
            metrics.reconnected()
        self._on_lost(reason)
        self._reconnect_handle = self._ioloop.call_later(delay, self._connect)

    def _backoff_delay(self) -> float:
        """Exponential backoff with equal jitter, capped at ``reconnect_max_delay``."""
        ceiling = min(
            self._rabbitmq.reconnect_max_delay,
            self._rabbitmq.reconnect_initial_delay * (2 ** min(self._failures - 1, 30)),
        )
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def stop(self, on_stopped: Callable[[], None]) -> None:
        """Close the connection (no reconnect) and call ``on_stopped`` once it is closed."""
        self._stopping = True
        self._on_stopped = on_stopped
        self.ready = False
        if self._stop_checks is not None:
            self._stop_checks()
        if self._reconnect_handle is not None:
            self._ioloop.remove_timeout(self._reconnect_handle)
            self._reconnect_handle = None
        connection = self._connection
        if connection is None or connection.is_closed:
            self._finish_stop()
        elif not connection.is_closing:
            connection.close()

    def _finish_stop(self) -> None:
        callback, self._on_stopped = self._on_stopped, None
        if callback is not None:
            callback()
