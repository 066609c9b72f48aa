"""Logging for the daemons: native journald records under systemd, plain lines on stderr otherwise.

systemd sets ``JOURNAL_STREAM=<dev>:<inode>`` for a service whose stderr is connected to the
journal. When that matches our fd 2, :func:`install_service_logging` installs
:class:`JournalHandler`, which writes each record as one datagram in journald's native protocol to
``/run/systemd/journal/socket`` (pure Python, no libsystemd). Every record then carries structured
fields, so an operator can run::

    journalctl -u burrow-consumer CORRELATION_ID=3f2a...        # one request, both daemons
    journalctl TRACE_ID=4bf92f3577b34da6a3ce929d0e0e4736         # its W3C trace, handler logs included
    journalctl -u burrow-producer PRIORITY=3 -o json-pretty      # errors with CODE_FILE/LINE/FUNC

Fields: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, CODE_FILE, CODE_LINE, CODE_FUNC, LOGGER,
THREAD_NAME, and whichever of :data:`STRUCTURED_FIELDS` a call passes via ``extra=``, e.g.
``logger.info("Handled %s", cid, extra={"CORRELATION_ID": cid, "QUEUE": queue})`` (the lower-case
spellings ``correlation_id`` etc. work too). A record without its own ``TRACE_ID`` gets the trace of
the request its thread or task works on (:func:`burrow.tracing.active`), so a handler's own log
lines carry the request's trace. Without ``JOURNAL_STREAM`` (a terminal, ``--daemon``,
a test) the same records go to stderr as timestamped lines with the fields appended.

Secrets never reach either output: :class:`SecretFilter` replaces every registered secret (the AMQP
password) in a record's text with ``***`` before any handler formats it.
"""

from __future__ import annotations

import array
import errno
import fcntl
import logging
import os
import socket
import struct
import sys
from collections.abc import Iterable, Mapping
from typing import TextIO

from burrow import tracing

logger = logging.getLogger(__name__)

#: Where journald listens for native-protocol datagrams.
JOURNAL_SOCKET = "/run/systemd/journal/socket"

#: Record attributes (from ``extra=``) copied into journal fields of the same name.
STRUCTURED_FIELDS = ("CORRELATION_ID", "MESSAGE_ID", "REQUEST_ID", "TRACE_ID", "QUEUE", "HANDLER")

#: syslog priorities journald uses for PRIORITY=, by Python level (rounded down).
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))

#: Library loggers and the lowest level they log at unless we run at DEBUG. pika is chatty at
#: INFO, and its connection workflow logs several ERROR lines per failed connect attempt, which
#: burrow.amqp already reports once per attempt with the backoff: during a broker outage these
#: would flood the journal.
_QUIET_LIBRARIES = {
    "pika": logging.WARNING,
    "pika.adapters.utils.connection_workflow": logging.CRITICAL,
    "pika.adapters.utils.io_services_utils": logging.CRITICAL,
    "pika.adapters.base_connection": logging.CRITICAL,
}

_MEMFD_SEALS = ("F_SEAL_SHRINK", "F_SEAL_GROW", "F_SEAL_WRITE", "F_SEAL_SEAL")


def journal_stream_matches(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """True when ``JOURNAL_STREAM`` names the file that ``fd`` (stderr) is, as sd_journal docs say.

    A service whose stderr was redirected elsewhere (``StandardError=file:...``) inherits the
    variable but must not log natively, or its records would skip the file the admin chose.
    """
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        stat = os.fstat(fd)
        return (int(device), int(inode)) == (stat.st_dev, stat.st_ino)
    except (ValueError, OSError):
        return False


def syslog_priority(levelno: int) -> int:
    """Map a Python level to the syslog priority journald filters on (``journalctl -p``)."""
    for threshold, priority in _PRIORITIES:
        if levelno >= threshold:
            return priority
    return 7


def _field(name: str, value: object) -> bytes:
    """Encode one field; values with a newline use the length-prefixed binary form."""
    data = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
    key = name.encode("ascii")
    if b"\n" in data:
        return key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key + b"=" + data + b"\n"


def structured_fields(record: logging.LogRecord) -> dict[str, str]:
    """The :data:`STRUCTURED_FIELDS` a log call passed through ``extra=`` (either spelling), and
    ``TRACE_ID`` from the thread's or task's active trace when the call passed none."""
    found: dict[str, str] = {}
    attributes = record.__dict__
    for name in STRUCTURED_FIELDS:
        value = attributes.get(name)
        if value is None:
            value = attributes.get(name.lower())
        if value is not None and value != "":
            found[name] = str(value)
    if "TRACE_ID" not in found:
        trace = tracing.current()
        if trace is not None:
            found["TRACE_ID"] = trace
    return found


class SecretFilter(logging.Filter):
    """Replaces registered secrets in a record's message with ``***`` (a handler filter).

    It runs before formatting, renders the message once (``msg % args``) when a secret might be in
    it, and rewrites the record so every handler after it sees only the redacted text.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Replace the list of secrets; empty strings are ignored (they would match everywhere)."""
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a broken format string: the handler's emit reports it via handleError
        redacted = message
        for secret in self._secrets:
            redacted = redacted.replace(secret, "***")
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            for secret in self._secrets:
                record.exc_text = record.exc_text.replace(secret, "***")
        return True


class JournalHandler(logging.Handler):
    """Writes records to journald's native socket with structured fields.

    One unconnected datagram socket is shared by all threads (each ``sendto`` is one atomic
    datagram). Records too large for a datagram travel as a sealed memfd, as libsystemd does. If
    journald cannot be reached the record goes to ``fallback`` (stderr) instead of being lost.
    """

    def __init__(
        self,
        identifier: str,
        socket_path: str = JOURNAL_SOCKET,
        fallback: logging.Handler | None = None,
    ) -> None:
        super().__init__()
        self.identifier = identifier
        self.socket_path = socket_path
        self.fallback = fallback
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.setFormatter(logging.Formatter("%(message)s"))

    def serialize(self, record: logging.LogRecord) -> bytes:
        """Build the datagram for ``record``; MESSAGE includes any traceback."""
        parts = [
            _field("MESSAGE", self.format(record)),
            _field("PRIORITY", syslog_priority(record.levelno)),
            _field("SYSLOG_IDENTIFIER", self.identifier),
            _field("CODE_FILE", record.pathname),
            _field("CODE_LINE", record.lineno),
            _field("CODE_FUNC", record.funcName),
            _field("LOGGER", record.name),
            _field("THREAD_NAME", record.threadName),
        ]
        parts.extend(_field(name, value) for name, value in structured_fields(record).items())
        return b"".join(parts)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = self.serialize(record)
        except Exception:  # a logging handler must never raise into the code that logs
            self.handleError(record)
            return
        try:
            self._send(data)
        except OSError:
            if self.fallback is not None:
                self.fallback.handle(record)
            else:
                self.handleError(record)

    def _send(self, data: bytes) -> None:
        try:
            self._socket.sendto(data, self.socket_path)
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            self._send_memfd(data)

    def _send_memfd(self, data: bytes) -> None:
        """Pass an oversized record as a sealed memfd over SCM_RIGHTS (journald accepts only sealed)."""
        fd = os.memfd_create("burrow-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, data)
            seals = 0
            for name in _MEMFD_SEALS:
                seals |= getattr(fcntl, name)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            # socket.send_fds() ignores its address argument (CPython 3.11), so use sendmsg.
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
            self._socket.sendmsg([], rights, 0, self.socket_path)
        finally:
            os.close(fd)

    def close(self) -> None:
        try:
            self._socket.close()
        finally:
            super().close()


class StderrFormatter(logging.Formatter):
    """``2026-11-28 01:02:03,456 INFO burrow.consumer: message [CORRELATION_ID=...]`` lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = structured_fields(record)
        if not fields:
            return text
        suffix = " ".join(f"{name}={value}" for name, value in fields.items())
        first, newline, rest = text.partition("\n")
        return f"{first} [{suffix}]{newline}{rest}"


class LoggingSetup:
    """What :func:`install_service_logging` installed, so a reload can change the level and secrets live."""

    def __init__(self, handler: logging.Handler, secret_filter: SecretFilter, native: bool) -> None:
        self.handler = handler
        self.secret_filter = secret_filter
        self.native = native

    def set_level(self, level: str) -> None:
        """Apply ``logging.level`` from a (re)loaded config to the root and library loggers."""
        _apply_level(level)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Replace the strings that must never be logged (after a reload read a new password)."""
        self.secret_filter.set_secrets(secrets)

    def close(self) -> None:
        """Remove and close the handler (tests; the daemons keep logging until exit)."""
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()


def _apply_level(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    logging.getLogger().setLevel(numeric)
    for name, floor in _QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else max(numeric, floor))


_installed: LoggingSetup | None = None


def install_service_logging(
    level: str,
    identifier: str,
    *,
    secrets: Iterable[str] = (),
    journal_socket: str = JOURNAL_SOCKET,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoggingSetup:
    """Route the root logger to journald (under systemd) or to ``stream`` (stderr), at ``level``.

    Calling it again replaces the previous setup (and a ``logging.basicConfig`` stderr handler),
    so tests and ``--daemon`` (which must set up logging after the fork) can call it freely. The returned object changes the level on SIGHUP.
    """
    global _installed
    if _installed is not None:
        _installed.close()
    root = logging.getLogger()
    for existing in list(root.handlers):
        # A plain stderr handler from logging.basicConfig() (the CLI's early set-up) would print
        # every record a second time; handlers of other kinds (pytest's capture) stay.
        if type(existing) is logging.StreamHandler and existing.stream in (sys.stderr, sys.__stderr__):
            root.removeHandler(existing)
    stderr_handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    stderr_handler.setFormatter(StderrFormatter())
    secret_filter = SecretFilter(secrets)
    native = journal_stream_matches(environ)
    handler: logging.Handler
    if native:
        handler = JournalHandler(identifier, journal_socket, fallback=stderr_handler)
    else:
        handler = stderr_handler
    handler.addFilter(secret_filter)
    root.addHandler(handler)
    _apply_level(level)
    _installed = LoggingSetup(handler, secret_filter, native)
    logger.debug("Logging to %s at %s", "journald" if native else "stderr", level.upper())
    return _installed


__all__ = [
    "JOURNAL_SOCKET",
    "STRUCTURED_FIELDS",
    "JournalHandler",
    "LoggingSetup",
    "SecretFilter",
    "StderrFormatter",
    "journal_stream_matches",
    "install_service_logging",
    "structured_fields",
    "syslog_priority",
]
