"""burrow.daemon.journal against a real datagram socket standing in for /run/systemd/journal/socket.

The test parses journald's native protocol itself (``KEY=value\\n`` or ``KEY\\n<u64 le><data>\\n``),
so a serialisation mistake that journald would reject fails here too.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from burrow.daemon import journal
from burrow.daemon.journal import JournalHandler, SecretFilter, install_service_logging


def parse_native(data: bytes) -> dict[str, str]:
    """Decode one native-protocol datagram into its fields."""
    fields: dict[str, str] = {}
    position = 0
    while position < len(data):
        newline = data.index(b"\n", position)
        line = data[position:newline]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            position = newline + 1
        else:
            key = line
            (length,) = struct.unpack("<Q", data[newline + 1 : newline + 9])
            value = data[newline + 9 : newline + 9 + length]
            assert data[newline + 9 + length : newline + 10 + length] == b"\n"
            position = newline + 10 + length
        name = key.decode("ascii")
        assert name and name.upper() == name and not name.startswith("_"), name
        fields[name] = value.decode()
    return fields


def receive(sock: socket.socket) -> dict[str, str]:
    """One record; an oversized one arrives as a sealed memfd, which is read here."""
    sock.settimeout(2.0)
    data, fds, _flags, _address = socket.recv_fds(sock, 1 << 20, 1)
    if fds:
        seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
        assert fcntl.fcntl(fds[0], fcntl.F_GET_SEALS) & seals == seals, "journald accepts only sealed memfds"
        with os.fdopen(fds[0], "rb") as memfd:
            # journald maps the memfd; the offset the sender left at the end is shared, so rewind.
            memfd.seek(0)
            data = memfd.read()
    return parse_native(data)


@pytest.fixture(params=["journal-socket", "nested/dir/socket"])
def journal_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / request.param
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    yield str(path), sock
    sock.close()


@pytest.fixture
def test_logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("burrow.tests.journal")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.propagate = True


def test_record_fields(journal_socket: tuple[str, socket.socket], test_logger: logging.Logger) -> None:
    path, sock = journal_socket
    test_logger.addHandler(JournalHandler("burrow-consumer", path))
    test_logger.warning(
        "Handled %s", "req-1", extra={"CORRELATION_ID": "c-42", "queue": "burrow.requests", "HANDLER": "m:f"}
    )
    fields = receive(sock)
    assert fields["MESSAGE"] == "Handled req-1"
    assert fields["PRIORITY"] == "4"
    assert fields["SYSLOG_IDENTIFIER"] == "burrow-consumer"
    assert fields["CODE_FILE"] == __file__
    assert fields["CODE_FUNC"] == "test_record_fields"
    assert int(fields["CODE_LINE"]) > 0
    assert fields["LOGGER"] == "burrow.tests.journal"
    assert fields["CORRELATION_ID"] == "c-42"
    assert fields["QUEUE"] == "burrow.requests"
    assert fields["HANDLER"] == "m:f"
    assert "MESSAGE_ID" not in fields


@pytest.mark.parametrize(
    ("level", "priority"),
    [(logging.DEBUG, "7"), (logging.INFO, "6"), (logging.WARNING, "4"), (logging.ERROR, "3"), (logging.CRITICAL, "2")],
)
def test_priorities(
    journal_socket: tuple[str, socket.socket], test_logger: logging.Logger, level: int, priority: str
) -> None:
    path, sock = journal_socket
    test_logger.addHandler(JournalHandler("burrow", path))
    test_logger.log(level, "x")
    assert receive(sock)["PRIORITY"] == priority


def test_traceback_uses_the_binary_field_form(journal_socket: tuple[str, socket.socket], test_logger: logging.Logger) -> None:
    path, sock = journal_socket
    test_logger.addHandler(JournalHandler("burrow", path))
    try:
        raise ValueError("boom")
    except ValueError:
        test_logger.exception("Handler failed", extra={"message_id": "m-1"})
    fields = receive(sock)
    assert fields["MESSAGE"].startswith("Handler failed\nTraceback (most recent call last):")
    assert fields["MESSAGE"].endswith("ValueError: boom")
    assert fields["MESSAGE_ID"] == "m-1"
    assert fields["PRIORITY"] == "3"


def test_oversized_record_goes_through_a_sealed_memfd(
    journal_socket: tuple[str, socket.socket], test_logger: logging.Logger
) -> None:
    path, sock = journal_socket
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    test_logger.addHandler(JournalHandler("burrow", path))
    big = "x" * 600_000
    test_logger.info("%s", big)
    assert receive(sock)["MESSAGE"] == big


def test_unreachable_journal_falls_back_to_stderr(tmp_path: Path, test_logger: logging.Logger) -> None:
    stream = io.StringIO()
    fallback = logging.StreamHandler(stream)
    test_logger.addHandler(JournalHandler("burrow", str(tmp_path / "gone"), fallback=fallback))
    test_logger.error("journald is down")
    assert "journald is down" in stream.getvalue()


def _matching_stream_env() -> dict[str, str]:
    info = os.fstat(2)
    return {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}


@pytest.mark.parametrize(
    ("environ", "native"),
    [
        ("matching", True),
        ({"JOURNAL_STREAM": "1:2"}, False),
        ({"JOURNAL_STREAM": "garbage"}, False),
        ({}, False),
    ],
)
def test_service_logging_picks_journal_only_for_our_stderr(
    journal_socket: tuple[str, socket.socket], environ: dict[str, str] | str, native: bool
) -> None:
    path, sock = journal_socket
    env = _matching_stream_env() if environ == "matching" else environ
    assert isinstance(env, dict)
    stream = io.StringIO()
    setup = install_service_logging("INFO", "burrow-producer", journal_socket=path, stream=stream, environ=env)
    try:
        assert setup.native is native
        logging.getLogger("burrow.tests.setup").info("started", extra={"CORRELATION_ID": "c-1"})
        if native:
            fields = receive(sock)
            assert fields["MESSAGE"] == "started"
            assert fields["SYSLOG_IDENTIFIER"] == "burrow-producer"
            assert stream.getvalue() == ""
        else:
            line = stream.getvalue()
            assert "INFO burrow.tests.setup: started [CORRELATION_ID=c-1]" in line
    finally:
        setup.close()


def test_level_changes_live(journal_socket: tuple[str, socket.socket]) -> None:
    stream = io.StringIO()
    setup = install_service_logging("WARNING", "burrow", stream=stream, environ={})
    try:
        log = logging.getLogger("burrow.tests.level")
        log.info("hidden")
        setup.set_level("DEBUG")
        log.debug("shown")
        assert logging.getLogger("pika").getEffectiveLevel() == logging.DEBUG
        setup.set_level("INFO")
        assert logging.getLogger("pika").getEffectiveLevel() == logging.WARNING
        with pytest.raises(ValueError):
            setup.set_level("LOUD")
    finally:
        setup.close()
    assert "hidden" not in stream.getvalue()
    assert "shown" in stream.getvalue()


def test_secrets_are_redacted_in_both_outputs(
    journal_socket: tuple[str, socket.socket], test_logger: logging.Logger
) -> None:
    path, sock = journal_socket
    stream = io.StringIO()
    secret_filter = SecretFilter(["s3cret-pw"])
    native = JournalHandler("burrow", path)
    native.addFilter(secret_filter)
    plain = logging.StreamHandler(stream)
    plain.addFilter(secret_filter)
    test_logger.addHandler(native)
    test_logger.addHandler(plain)
    try:
        raise ConnectionError("login with s3cret-pw refused")
    except ConnectionError:
        test_logger.exception("amqp://burrow:%s@localhost failed", "s3cret-pw")
    fields = receive(sock)
    assert "s3cret-pw" not in fields["MESSAGE"]
    assert "amqp://burrow:***@localhost failed" in fields["MESSAGE"]
    assert "login with *** refused" in fields["MESSAGE"]
    assert "s3cret-pw" not in stream.getvalue()
    assert "***" in stream.getvalue()


def test_structured_fields_accept_both_spellings() -> None:
    record = logging.LogRecord("n", logging.INFO, __file__, 1, "m", None, None)
    record.correlation_id = "lower"
    record.QUEUE = "upper"
    record.HANDLER = ""
    assert journal.structured_fields(record) == {"CORRELATION_ID": "lower", "QUEUE": "upper"}


def test_secret_filter_survives_a_broken_format_string(test_logger: logging.Logger) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretFilter(["pw"]))
    test_logger.addHandler(handler)
    logging.raiseExceptions = False
    try:
        test_logger.info("two %s %s", "args?")  # must not raise into the caller
    finally:
        logging.raiseExceptions = True
    test_logger.info("fine")
    assert "fine" in stream.getvalue()
