"""Running a daemon in the foreground: signals, start-up and an ordered, time-limited shutdown.

Signals are blocked in every thread and taken synchronously by the main thread with
``sigtimedwait``, so no handler runs at an arbitrary point: SIGTERM/SIGINT start a graceful drain
(a second one forces an immediate exit), SIGHUP asks for a configuration reload.

Around the engine this module wires the systemd service layer: logging to journald
(:mod:`burrow.daemon.journal`), ``READY=1`` only once the broker connection is up and the topology
declared (and, for the producer, the API socket is served), ``STATUS=`` with live counters, the
watchdog pinged from the engine's AMQP I/O loop (:meth:`add_periodic`), ``RELOADING=1`` around a
SIGHUP reload, ``STOPPING=1`` before the drain, opt-in Prometheus metrics, and ``--daemon``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Protocol

from burrow.amqp.queuestats import describe as describe_queues
from burrow.amqp.setup import BrokerLink
from burrow.daemon import prometheus
from burrow.config import BurrowConfig, load_config
from burrow.consumer import Consumer
from burrow.deadletters import DeadLetterWatcher
from burrow.errors import ConfigError
from burrow.daemon.journal import LoggingSetup, install_service_logging
from burrow.daemon.reload import LIVE_SETTINGS, PRODUCER_LIVE_SETTINGS, changed_settings, with_live_settings
from burrow.daemon.notify import Notifier, StatusReporter, StatusSnapshot, broker_status

logger = logging.getLogger(__name__)

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
#: SIGUSR1 is only acted on with ``BURROW_TEST_HOOKS=1`` (see :func:`_test_hook`); otherwise it is
#: blocked and logged, so a stray ``kill -USR1`` cannot terminate a daemon (its default action).
HANDLED_SIGNALS = STOP_SIGNALS | {signal.SIGHUP, signal.SIGUSR1}
FORCED_EXIT_CODE = 130
#: How often the main loop looks at the engine while waiting for signals (seconds).
MAIN_LOOP_INTERVAL = 0.25
#: Seconds between ``STATUS=`` updates.
STATUS_INTERVAL = 5.0
TEST_HOOKS_ENV = "BURROW_TEST_HOOKS"


def block_signals() -> None:
    """Block the daemon's signals before any thread starts, so only ``wait_for_signal`` sees them."""
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)


def wait_for_signal(timeout: float) -> int | None:
    """Return the next pending signal number, or None after ``timeout`` seconds."""
    info = signal.sigtimedwait(HANDLED_SIGNALS, timeout)
    return info.si_signo if info is not None else None


def stop_with_force(stop: Callable[[], object], what: str, limit: float) -> None:
    """Run ``stop`` in a thread; a second stop signal while it runs exits the process at once."""
    worker = threading.Thread(target=stop, name="burrow-shutdown", daemon=True)
    worker.start()
    while worker.is_alive():
        signo = wait_for_signal(0.2)
        if signo in STOP_SIGNALS:
            logger.warning("Second %s during shutdown of the %s: exiting now", signal.Signals(signo).name, what)
            os._exit(FORCED_EXIT_CODE)
    worker.join(limit)


class Engine(Protocol):
    """What the service layer needs from a Producer or a Consumer."""

    @property
    def connected(self) -> bool: ...

    @property
    def in_flight(self) -> int: ...

    def add_periodic(self, interval: float, fn: Callable[[], None]) -> None: ...

    def broker_links(self) -> list[BrokerLink]: ...


class _ServiceLayer:
    """Logging, sd_notify, status, watchdog and metrics around one engine, for one role."""

    def __init__(self, config: BurrowConfig, role: str, live: set[str] = LIVE_SETTINGS) -> None:
        self.config = config
        self.role = role
        self.live = live
        self.logs: LoggingSetup = install_service_logging(
            config.logging.level, f"burrow-{role}", secrets=[config.rabbitmq.password]
        )
        # Built here, i.e. after any --daemon fork: python-daemon closes inherited descriptors.
        self.notifier = Notifier()
        self.reporter: StatusReporter | None = None
        self.ready_sent = False
        self.hung = False
        if config.metrics.enabled:
            try:
                prometheus.enable(role, config.metrics.host, config.metrics.port)
            except OSError as exc:
                # Metrics are not worth refusing requests for: say so loudly and serve anyway.
                logger.error("Cannot serve metrics on %s:%d: %s; running without the HTTP endpoint",
                             config.metrics.host, config.metrics.port, exc)

    def attach(self, engine: Engine, snapshot: Callable[[], StatusSnapshot]) -> None:
        """Ping the watchdog from the engine's I/O loop and start the STATUS= reporter.

        The tick runs often enough that a ping is never more than a quarter interval late, and
        never more than once a second when no watchdog is armed (then it is a no-op anyway).
        """
        interval = self.notifier.watchdog_interval
        tick = min(1.0, interval / 4) if interval else 1.0
        engine.add_periodic(tick, self._watchdog)
        prometheus.track_in_flight(lambda: engine.in_flight)
        prometheus.track_connected(lambda: engine.connected)
        self.notifier.status(broker_status(engine.broker_links()))
        self.reporter = StatusReporter(self.notifier, snapshot, STATUS_INTERVAL)
        self.reporter.start()

    def _watchdog(self) -> None:
        self.notifier.watchdog_tick()

    def maybe_ready(self, engine: Engine, extra_ready: Callable[[], bool] = lambda: True) -> bool:
        """Send READY=1 the first time the engine is connected and ``extra_ready()`` holds."""
        if self.ready_sent or not engine.connected or not extra_ready():
            return self.ready_sent
        self.ready_sent = True
        status = self.reporter.report() if self.reporter is not None else broker_status(engine.broker_links())
        self.notifier.ready(status)
        logger.info("burrow-%s ready (%s)", self.role, status)
        return True

    def stopping(self, in_flight: int) -> None:
        if self.reporter is not None:
            self.reporter.stop()
        self.notifier.stopping(f"draining: {in_flight} in flight")

    def reload(self, apply: Callable[[BurrowConfig, list[str]], None]) -> None:
        """SIGHUP: re-read the file; apply live settings, or keep the old config and say why."""
        path = self.config.path
        self.notifier.reloading(f"reloading {path}")
        try:
            new = load_config(path)
        except ConfigError as exc:
            logger.error("Reload refused, keeping the running configuration: %s", exc)
            self._reloaded()
            return
        changed = changed_settings(self.config, new)
        restart = [name for name in changed if name not in self.live]
        try:
            apply(new, changed)
        except (ValueError, ConfigError) as exc:
            logger.error("Reload refused, keeping the running configuration: %s", exc)
            self._reloaded()
            return
        if "logging.level" in changed:
            self.logs.set_level(new.logging.level)
        self.logs.set_secrets([new.rabbitmq.password, self.config.rabbitmq.password])
        if restart:
            logger.warning("Reloaded %s; these changes need a restart to apply: %s", path, ", ".join(restart))
        live = [name for name in changed if name in self.live]
        logger.info("Reloaded %s: %s", path, ", ".join(live) if live else "no live setting changed")
        self.config = with_live_settings(self.config, new, self.live)
        self._reloaded()

    def _reloaded(self) -> None:
        status = self.reporter.report() if self.reporter is not None else ""
        if self.ready_sent:
            self.notifier.ready(status)
        else:
            self.notifier.status(status)

    def handle_next_signal(self, engine: Engine, apply: Callable[[BurrowConfig, list[str]], None]) -> bool:
        """Wait one main-loop interval for a signal and act on it; True means "stop now"."""
        signo = wait_for_signal(MAIN_LOOP_INTERVAL)
        if signo in STOP_SIGNALS:
            logger.info("Received %s: draining", signal.Signals(signo).name)
            return True
        if signo == signal.SIGHUP:
            self.reload(apply)
        elif signo == signal.SIGUSR1:
            self.test_hook(engine)
        return False

    def test_hook(self, engine: Engine) -> None:
        """SIGUSR1 with ``BURROW_TEST_HOOKS=1``: hang the AMQP I/O loop so the watchdog fires.

        System tests use it to prove that a hung loop gets the service killed and restarted.
        Without the variable the signal is only logged.
        """
        if os.environ.get(TEST_HOOKS_ENV) != "1":
            logger.warning("Ignoring SIGUSR1 (test hooks are off)")
            return
        if self.hung:
            return
        self.hung = True
        logger.warning("Test hook: hanging the AMQP I/O loop; the watchdog should restart us")
        never_set = threading.Event()

        def hang() -> None:
            never_set.wait()

        engine.add_periodic(0.01, hang)

    def close(self) -> None:
        if self.reporter is not None:
            self.reporter.stop()
        prometheus.disable()


def run_consumer(config: BurrowConfig) -> int:
    """Run a consumer until SIGTERM/SIGINT, then drain; returns the process exit code."""
    block_signals()
    layer = _ServiceLayer(config, "consumer")
    consumer = Consumer(config).start()
    watcher = DeadLetterWatcher(config).start() if config.consumer.dead_letter_notices else None
    logger.info("Consumer starting: broker %s, services %s", ", ".join(map(str, config.rabbitmq.nodes())),
                ", ".join(consumer.services))

    def snapshot() -> StatusSnapshot:
        stats = consumer.stats()
        services = describe_queues(consumer.service_queues())
        return StatusSnapshot(
            processed=stats.processed,
            in_flight=consumer.in_flight,
            connected=consumer.connected,
            failed=stats.handler_errors + stats.dead_lettered,
            detail="; ".join(filter(None, [broker_status(consumer.broker_links()), services])),
        )

    def apply(new: BurrowConfig, changed: list[str]) -> None:
        if "consumer.concurrency" in changed:
            consumer.set_concurrency(new.consumer.concurrency)

    layer.attach(consumer, snapshot)
    prometheus.track_services(consumer.services, consumer.service_queues)
    while True:
        layer.maybe_ready(consumer)
        if layer.handle_next_signal(consumer, apply):
            break
    layer.stopping(consumer.in_flight)
    # Shutdown, in order: 1. stop taking requests, 2. finish in-flight handlers and publish their
    # replies, 3. ack them, 4. close both connections. Bounded by consumer.shutdown_timeout.
    shutdown_timeout = layer.config.consumer.shutdown_timeout
    stop_with_force(lambda: consumer.stop(shutdown_timeout), "consumer", shutdown_timeout + 15)
    # 5. close the dead-letter watcher; copies it has not acked go back to its queue.
    if watcher is not None:
        watcher.stop()
    stats = consumer.stats()
    logger.info("Consumer stopped: %d processed, %d dead-lettered", stats.processed, stats.dead_lettered)
    layer.close()
    return 0


def run_producer(config: BurrowConfig) -> int:
    """Run the producer daemon and its HTTP API until SIGTERM/SIGINT, then drain; exit code.

    The API starts serving only once the broker connection is up: until then clients wait in the
    socket's queue (systemd's, under socket activation) instead of getting 503 from a producer
    that is still connecting, which is what keeps requests alive across ``systemctl restart``.
    """
    from burrow.daemon.http import HttpApi
    from burrow.producer import Producer

    block_signals()
    layer = _ServiceLayer(config, "producer", PRODUCER_LIVE_SETTINGS)
    settings = config.producer
    producer = Producer(config).start()
    api = HttpApi(
        producer,
        socket_path=settings.socket,
        socket_mode=settings.socket_mode,
        max_body=settings.max_message_bytes,
        default_timeout=settings.request_timeout,
        unavailable_wait=settings.unavailable_wait,
    )
    logger.info("Producer starting: broker %s, %s reply queue %s, API socket %s",
                ", ".join(map(str, config.rabbitmq.nodes())), producer.reply_queue_type, producer.reply_queue, settings.socket)

    def snapshot() -> StatusSnapshot:
        stats = producer.stats()
        return StatusSnapshot(
            processed=stats.answered + stats.remote_errors,
            in_flight=producer.in_flight,
            connected=producer.connected,
            failed=stats.remote_errors + stats.timeouts + stats.failed,
            detail=f"{broker_status(producer.broker_links())}, {producer.reply_queue_type} reply queue",
        )

    def apply(new: BurrowConfig, changed: list[str]) -> None:
        if {"rabbitmq.host", "rabbitmq.hosts"} & set(changed):
            producer.use_brokers(with_live_settings(layer.config, new, PRODUCER_LIVE_SETTINGS).rabbitmq)
        if "producer.request_timeout" in changed:
            api.reconfigure(default_timeout=new.producer.request_timeout)
        if "producer.unavailable_wait" in changed:
            api.reconfigure(unavailable_wait=new.producer.unavailable_wait)

    def api_serving() -> bool:
        if not api.started:
            api.start()
        return True

    layer.attach(producer, snapshot)
    while True:
        try:
            layer.maybe_ready(producer, api_serving)
        except (OSError, ValueError) as exc:
            # The socket is taken or systemd passed something unusable: fail the start (systemd
            # retries within its start limit) rather than run a producer nobody can reach.
            logger.error("Cannot serve the HTTP API on %s: %s", settings.socket, exc)
            layer.stopping(producer.in_flight)
            producer.stop(0)
            layer.close()
            return 1
        if layer.handle_next_signal(producer, apply):
            break
    layer.stopping(producer.in_flight)
    shutdown_timeout = layer.config.producer.shutdown_timeout

    def drain() -> None:
        # 1. no new clients (systemd's socket keeps queueing them for the next producer),
        # 2. let running HTTP requests get their replies, 3. close the producer, 4. cut the rest.
        started = time.monotonic()
        api.stop_accepting()
        api.drain(shutdown_timeout)
        producer.stop(max(0.0, shutdown_timeout - (time.monotonic() - started)))
        api.close()

    stop_with_force(drain, "producer", shutdown_timeout + 15)
    stats = producer.stats()
    logger.info("Producer stopped: %d answered, %d timed out, %d failed", stats.answered, stats.timeouts, stats.failed)
    layer.close()
    return 0


def run_daemon(role: str, config: BurrowConfig, *, detach: bool = False, pidfile: str | None = None) -> int:
    """Entry point for ``burrow-consumer``/``burrow-producer``: optionally detach, then run.

    ``detach`` (``--daemon``) forks with python-daemon first; logging, sd_notify and metrics are set
    up inside the run functions, i.e. after the fork, as python-daemon closes every descriptor.
    """
    run: Callable[[BurrowConfig], int] = run_consumer if role == "consumer" else run_producer
    if not detach:
        return run(config)
    from burrow.daemon.daemonize import run_detached

    return run_detached(lambda: run(config), pidfile)


__all__ = [
    "FORCED_EXIT_CODE",
    "block_signals",
    "run_consumer",
    "run_daemon",
    "run_producer",
    "stop_with_force",
    "wait_for_signal",
]
