"""Raw HTTP/1.1 on the producer daemon's Unix socket: the bytes a test wants on the wire, including
ones no well-behaved client would send, and the one response parsed by ``http.client``."""

from __future__ import annotations

import http.client
import socket


def connect(path: str, timeout: float = 10.0) -> socket.socket:
    """A fresh connection to the API socket at ``path``; reads time out after ``timeout`` seconds."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers and body of the next response on ``sock``."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def exchange(path: str, raw: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a fresh connection and parse the one response."""
    with connect(path, timeout) as sock:
        sock.sendall(raw)
        return read_response(sock)


def post(body: bytes, head: bytes = b"") -> bytes:
    """A ``POST /v1/requests`` of ``body``; ``head`` holds extra header lines, each ending in CRLF."""
    return b"POST /v1/requests HTTP/1.1\r\nHost: burrow\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), head, body)
