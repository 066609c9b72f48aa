"""``burrow send``: talk to a running producer daemon through its Unix-socket HTTP API.

::

    burrow send hello world                      # two requests, one reply per line on stdout
    burrow send --count 1000 --concurrency 16 x  # a burst with a progress bar and a summary line
    burrow send --socket /tmp/p.sock --timeout 5 -   # body from stdin

Single requests use one connection each (cheap on a Unix socket): a connection never outlives a
producer restart, so under socket activation a request sent while the producer restarts waits in
the kernel's queue and is answered by the next producer instead of failing on a stale connection.
A burst (``--count``) holds ``--concurrency`` HTTP/1.1 keep-alive connections on one asyncio loop
(:mod:`burrow.tools.socketburst`), so the client costs far less CPU per request than the daemon
and does not limit its own measurement; a keep-alive connection that a restarting producer closed
is replaced the same way.
Exit status: 0 when every request got a reply, 1 when any failed, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence

from burrow.exitcodes import EX_FAILED, EX_USAGE
from burrow.partitions import key_argument
from burrow.services import http_target, service_argument
from burrow.tools import file_argument
from burrow.tools.socketburst import HttpStatusError, run_socket_burst

logger = logging.getLogger(__name__)

DEFAULT_SOCKET = "/run/burrow/producer.sock"
#: Seconds added to the request's own timeout before the client gives up on the socket.
CLIENT_GRACE = 10.0
#: Client socket timeout when the request has no explicit ``--timeout`` (server default is 30 s).
DEFAULT_CLIENT_TIMEOUT = 60.0


class SendError(Exception):
    """The producer answered with an error status; ``status`` and ``code`` say which."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{status} {code}: {message}")


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over an ``AF_UNIX`` stream socket; the Host header is a placeholder."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("burrow", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class SocketClient:
    """Sends requests to the producer's API; one connection per request (see module docstring)."""

    def __init__(self, path: str = DEFAULT_SOCKET, timeout: float | None = None, service: str | None = None,
                 key: str | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.target = http_target(service)
        self.key = key

    def request(self, method: str, target: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """One HTTP exchange; returns status, headers (lower-case names) and body."""
        headers = {"Connection": "close"}
        if self.timeout is not None:
            headers["X-Burrow-Timeout"] = f"{self.timeout:g}"
        if self.key is not None:
            headers["X-Burrow-Key"] = self.key
        client_timeout = self.timeout + CLIENT_GRACE if self.timeout is not None else DEFAULT_CLIENT_TIMEOUT
        connection = UnixHTTPConnection(self.path, timeout=client_timeout)
        try:
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            connection.close()

    def probe(self) -> None:
        """Connect to the socket and hang up; raises the ``OSError`` a request would meet first."""
        connection = UnixHTTPConnection(self.path, timeout=CLIENT_GRACE)
        try:
            connection.connect()
        finally:
            connection.close()

    def send(self, body: bytes) -> bytes:
        """POST ``body`` to ``/v1/requests`` (or the service's ``/v1/services/<name>``) and return
        the reply; raise :class:`SendError` otherwise."""
        status, _headers, data = self.request("POST", self.target, body)
        if status == 200:
            return data
        raise _error_from(status, data)

    def health(self) -> dict[str, object]:
        """``GET /v1/health`` as a dict (whatever the status code)."""
        _status, _headers, data = self.request("GET", "/v1/health")
        document = json.loads(data)
        if not isinstance(document, dict):
            raise SendError(500, "bad_health", "health answer is not a JSON object")
        return document


def _error_from(status: int, data: bytes) -> SendError:
    try:
        document = json.loads(data)
        code, message = str(document.get("error", "error")), str(document.get("message", ""))
        if "type" in document:
            message = f"{document['type']}: {message}"
    except (ValueError, AttributeError):
        code, message = "error", data.decode("utf-8", "replace")
    return SendError(status, code, message)


def add_socket_argument(parser: argparse.ArgumentParser) -> None:
    """``--socket PATH``: the producer's API socket, by default ``$BURROW_SOCKET`` or the installed one."""
    file_argument(parser.add_argument(
        "--socket",
        default=os.environ.get("BURROW_SOCKET", DEFAULT_SOCKET),
        help=f"the producer's API socket (default: $BURROW_SOCKET or {DEFAULT_SOCKET})",
    ))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``burrow send``'s options to its sub-parser (the CLI calls this, then :func:`run`)."""
    parser.add_argument("messages", nargs="+", metavar="MESSAGE", help="request bodies; '-' reads stdin")
    add_socket_argument(parser)
    parser.add_argument("--timeout", type=float, help="seconds per request (X-Burrow-Timeout)")
    parser.add_argument("--service", type=service_argument, metavar="NAME",
                        help="send to this named service (default: the default service)")
    parser.add_argument("--key", type=key_argument, help="keep these requests on one partition of a split service (X-Burrow-Key)")
    parser.add_argument("--count", type=int, help="send this many requests, cycling through the messages")
    parser.add_argument("--concurrency", type=int, default=1, help="parallel requests with --count (default 1)")
    parser.add_argument("--max-seconds", type=float, help="stop sending new requests after this long")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _bodies(messages: Sequence[str]) -> list[bytes]:
    return [sys.stdin.buffer.read() if message == "-" else message.encode() for message in messages]


def run(args: argparse.Namespace) -> int:
    """Execute ``burrow send`` with parsed ``args``; returns the exit status."""
    if args.timeout is not None and args.timeout <= 0:
        print("burrow send: --timeout must be greater than 0", file=sys.stderr)
        return EX_USAGE
    if args.concurrency < 1 or (args.count is not None and args.count < 1):
        print("burrow send: --count and --concurrency must be at least 1", file=sys.stderr)
        return EX_USAGE
    client = SocketClient(args.socket, timeout=args.timeout, service=args.service, key=args.key)
    bodies = _bodies(args.messages)
    if args.count is None:
        return _send_each(client, bodies)
    try:
        # One connection before the burst: with no producer, say so once, as a single send does,
        # rather than count every request as failed.
        client.probe()
    except OSError as exc:
        print(f"burrow send: {_describe(exc, client.path)}", file=sys.stderr)
        return EX_FAILED
    result = run_socket_burst(
        args.socket,
        bodies,
        count=args.count,
        concurrency=args.concurrency,
        timeout=args.timeout,
        client_timeout=args.timeout + CLIENT_GRACE if args.timeout is not None else DEFAULT_CLIENT_TIMEOUT,
        max_seconds=args.max_seconds,
        show_progress=not args.quiet,
        error_kind=lambda exc: _kind(exc, client.path),
        target=client.target,
    )
    print(result.line())
    return EX_FAILED if result.failed or result.skipped else 0


def _send_each(client: SocketClient, bodies: Sequence[bytes]) -> int:
    """Send the messages one after another, printing each reply (or error) as it comes."""
    failed = 0
    for body in bodies:
        try:
            reply = client.send(body)
        except (SendError, OSError, http.client.HTTPException) as exc:
            failed += 1
            print(f"burrow send: {_describe(exc, client.path)}", file=sys.stderr)
            continue
        sys.stdout.buffer.write(reply + b"\n")
        sys.stdout.flush()
    return EX_FAILED if failed else 0


def _kind(exc: BaseException, path: str) -> str:
    """Group burst failures by HTTP status and code (``504 timeout``), by what went wrong with the
    socket (the producer stopped mid-burst), else by exception class."""
    if isinstance(exc, HttpStatusError):
        exc = _error_from(exc.status, exc.body)
    if isinstance(exc, SendError):
        return f"{exc.status} {exc.code}"
    if isinstance(exc, (FileNotFoundError, PermissionError, ConnectionRefusedError)):
        return _describe(exc, path)
    return type(exc).__name__


def _describe(exc: BaseException, path: str) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"no producer socket at {path} (is burrow-producer running? try --socket)"
    if isinstance(exc, PermissionError):
        return f"not allowed to connect to {path} (join the socket's group, usually 'burrow')"
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing listens on {path}"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m burrow.tools.sendclient``), same as ``burrow send``."""
    parser = argparse.ArgumentParser(prog="burrow send", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
