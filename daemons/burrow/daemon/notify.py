"""systemd service notifications: readiness, status text, watchdog pings, reload and stop.

A daemon creates one :class:`Notifier` (after any ``--daemon`` fork, because the datagram socket it
opens would not survive python-daemon closing every file descriptor) and tells systemd about its
life cycle through it. When ``NOTIFY_SOCKET`` is unset (a terminal, a test, a host without systemd)
every call is a cheap no-op, so the daemons call it unconditionally.

The watchdog is deliberately driven from the outside: a periodic timer on the engine's AMQP I/O
loop (every quarter of the watchdog interval, at most a second apart; see
``burrow.daemon.service``) calls :meth:`Notifier.watchdog_tick`, and the tick sends ``WATCHDOG=1``
at most every half of ``WATCHDOG_USEC``. A loop that hangs stops ticking, systemd's
``WatchdogSec`` expires, and systemd kills and restarts the service. A separate timer thread would
keep pinging through such a hang.

:class:`StatusReporter` turns live counters into the one-line ``STATUS=`` that ``systemctl status``
shows, e.g. ``processed 12034, in flight 35, 820 req/s, broker connected``; :func:`broker_status`
puts the engines' broker connections into those words.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

import sdnotify

from burrow.amqp.setup import BrokerLink

logger = logging.getLogger(__name__)

#: ``STATUS=`` is refreshed this often (seconds) unless the reporter is told otherwise.
DEFAULT_STATUS_INTERVAL = 5.0


def _watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Return the ping interval (half of ``WATCHDOG_USEC``) or ``None`` when no watchdog is armed.

    ``WATCHDOG_PID``, when set, names the process the watchdog is meant for; any other process (a
    child that inherited the environment) must not ping, just like ``sd_watchdog_enabled()``.
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID", "")
    if watchdog_pid and watchdog_pid != str(pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        logger.warning("Ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    if value <= 0:
        return None
    return value / 1_000_000 / 2


class Notifier:
    """Sends ``sd_notify`` messages for this process; a no-op without ``NOTIFY_SOCKET``.

    It reads ``NOTIFY_SOCKET`` and connects when built, so build it after python-daemon's
    ``DaemonContext`` has opened (which closes every inherited file descriptor). Thread-safe.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._address = os.environ.get("NOTIFY_SOCKET") or None
        self._clock = clock
        self._lock = threading.Lock()
        self._notifier: sdnotify.SystemdNotifier | None = None
        if self._address is not None:
            # sdnotify connects here and swallows errors; a socket of None means systemd's end is
            # gone, which only matters if nobody hears READY=1, so say it once in the log.
            self._notifier = sdnotify.SystemdNotifier()
            if self._notifier.socket is None:
                logger.warning("Cannot reach the systemd notification socket %s", self._address)
        self._watchdog_interval = _watchdog_interval(os.environ, os.getpid()) if self._address else None
        self._last_ping: float | None = None

    @property
    def enabled(self) -> bool:
        """True when systemd (or a test) listens on ``NOTIFY_SOCKET``."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings, or ``None`` when the unit has no ``WatchdogSec``."""
        return self._watchdog_interval

    def send(self, *assignments: str) -> None:
        """Send ``KEY=value`` assignments in one datagram, as ``sd_notify`` does.

        sdnotify swallows socket errors (systemd gone, socket full): a daemon must keep serving even
        when its supervisor cannot hear it, and a missed ping is what the watchdog is for.
        """
        if self._notifier is None or not assignments:
            return
        message = "\n".join(assignments)
        with self._lock:
            self._notifier.notify(message)

    def ready(self, status: str | None = None) -> None:
        """Tell systemd start-up (or a reload) is complete: ``systemctl start`` returns now."""
        self._send_with_status("READY=1", status)

    def status(self, text: str) -> None:
        """Replace the free-form status line shown by ``systemctl status``."""
        self.send(f"STATUS={_one_line(text)}")

    def reloading(self, status: str | None = None) -> None:
        """Announce a configuration reload; systemd shows "reloading" until the next :meth:`ready`.

        ``MONOTONIC_USEC`` is what newer systemd (253+) wants with ``RELOADING=1``; 252 ignores it.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send_with_status("RELOADING=1", status, f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> None:
        """Announce the graceful drain; systemd shows "deactivating" and stops restarting on ready."""
        self._send_with_status("STOPPING=1", status)

    def watchdog_tick(self) -> bool:
        """Ping the watchdog if half of ``WATCHDOG_USEC`` passed since the last ping.

        Called from a periodic timer on the AMQP I/O loop (cheap: one clock read when nothing is
        due), so pings stop when that loop stops or hangs. Returns True when a ping was sent.
        """
        interval = self._watchdog_interval
        if interval is None:
            return False
        now = self._clock()
        last = self._last_ping
        if last is not None and now - last < interval:
            return False
        self._last_ping = now
        self.send("WATCHDOG=1")
        return True

    def _send_with_status(self, state: str, status: str | None, *more: str) -> None:
        assignments = [state, *more]
        if status is not None:
            assignments.append(f"STATUS={_one_line(status)}")
        self.send(*assignments)


def _one_line(text: str) -> str:
    """``STATUS=`` ends at the first newline; keep all of a multi-line text visible."""
    return " ".join(text.split("\n"))


@dataclasses.dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """Live counters of one daemon at one instant, as the engine reports them.

    ``processed`` only ever grows (requests answered by the producer, handled by the consumer);
    ``detail`` replaces "broker connected"/"broker unreachable" when there is more to say, e.g.
    "broker unreachable (connection refused), retry 4 in 8.0 s".
    """

    processed: int
    in_flight: int
    connected: bool
    failed: int = 0
    detail: str = ""


class StatusReporter:
    """Sends ``STATUS=processed N, in flight M, R req/s, broker ...`` every ``interval`` seconds.

    It runs in its own daemon thread and only reads counters through ``snapshot``, so a slow or hung
    engine shows stale numbers at worst; liveness is the watchdog's job, not this thread's.
    """

    def __init__(
        self,
        notifier: Notifier,
        snapshot: Callable[[], StatusSnapshot],
        interval: float = DEFAULT_STATUS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._notifier = notifier
        self._snapshot = snapshot
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous: tuple[float, int] | None = None

    def format(self, snapshot: StatusSnapshot) -> str:
        """Render one status line; the rate is over the time since the previous call."""
        now = self._clock()
        rate = 0.0
        if self._previous is not None:
            then, count = self._previous
            if now > then:
                rate = max(0, snapshot.processed - count) / (now - then)
        self._previous = (now, snapshot.processed)
        parts = [f"processed {snapshot.processed}"]
        if snapshot.failed:
            parts.append(f"failed {snapshot.failed}")
        parts.append(f"in flight {snapshot.in_flight}")
        parts.append(f"{rate:.0f} req/s")
        if snapshot.detail:
            parts.append(snapshot.detail)
        else:
            parts.append("broker connected" if snapshot.connected else "broker unreachable")
        return ", ".join(parts)

    def report(self) -> str:
        """Take a snapshot now, send it as ``STATUS=`` and return the text."""
        text = self.format(self._snapshot())
        self._notifier.status(text)
        return text

    def start(self) -> None:
        """Start the reporting thread; the first status goes out immediately."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="burrow-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (waits at most one interval) so the drain's STATUS is not overwritten."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self._interval + 1.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.report()
            except Exception:
                # A broken snapshot callable must not kill the thread for good; the next turn
                # may succeed, and the traceback tells the operator which counter failed.
                logger.exception("Could not build the status line")
            self._stop.wait(self._interval)


def broker_status(links: list[BrokerLink]) -> str:
    """The STATUS words about the broker: the node(s) in use and the failovers so far, e.g.
    "broker 10.0.0.2:5672 connected", "broker b1:5672 connected (also b3:5672), 2 failovers" or
    "waiting for broker b2:5672 (retrying with backoff)"."""
    nodes = list(dict.fromkeys(str(link.node) for link in links))
    failovers = sum(link.failovers for link in links)
    moves = f", {failovers} failover{'s' if failovers != 1 else ''}" if failovers else ""
    also = f" (also {', '.join(nodes[1:])})" if len(nodes) > 1 else ""
    if all(link.connected for link in links):
        return f"broker {nodes[0]} connected{also}{moves}"
    waiting = [str(link.node) for link in links if not link.connected]
    return f"waiting for broker {', '.join(dict.fromkeys(waiting))} (retrying with backoff{moves})"


__all__ = ["DEFAULT_STATUS_INTERVAL", "Notifier", "StatusReporter", "StatusSnapshot", "broker_status"]
