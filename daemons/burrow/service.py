"""Running a daemon in the foreground: signals, start-up and an ordered, time-limited shutdown.

Signals are blocked in every thread and taken synchronously by the main thread with
``sigtimedwait``, so no handler runs at an arbitrary point: SIGTERM/SIGINT start a graceful drain
(a second one forces an immediate exit), SIGHUP asks for a configuration reload.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Callable

from burrow.config import BurrowConfig
from burrow.consumer import Consumer

logger = logging.getLogger(__name__)

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
HANDLED_SIGNALS = STOP_SIGNALS | {signal.SIGHUP}
FORCED_EXIT_CODE = 130


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


def run_consumer(config: BurrowConfig) -> int:
    """Run a consumer until SIGTERM/SIGINT, then drain; returns the process exit code."""
    block_signals()
    consumer = Consumer(config).start()
    logger.info("Consumer starting: broker %s:%d, queue %s", config.rabbitmq.host, config.rabbitmq.port,
                config.topology.request_queue)
    while True:
        signo = wait_for_signal(1.0)
        if signo in STOP_SIGNALS:
            logger.info("Received %s: draining", signal.Signals(signo).name)
            break
        if signo == signal.SIGHUP:
            logger.info("Received SIGHUP: reload is not supported by this build; ignoring")
    # Shutdown, in order: 1. stop taking requests, 2. finish in-flight handlers and publish their
    # replies, 3. ack them, 4. close both connections. Bounded by consumer.shutdown_timeout.
    stop_with_force(lambda: consumer.stop(), "consumer", config.consumer.shutdown_timeout + 15)
    logger.info("Consumer stopped: %d processed, %d dead-lettered", consumer.stats.processed, consumer.stats.dead_lettered)
    return 0
