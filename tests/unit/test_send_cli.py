"""``burrow send`` with no producer behind the socket: one line, the same for one request and a burst."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from processes import burrow


def send(*args: str) -> subprocess.CompletedProcess[str]:
    return burrow("send", *args, timeout=60)


@pytest.fixture(params=["no-socket", "nobody-listening"])
def dead_socket(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    """A socket path with no producer: nothing there, or a socket file nobody listens on."""
    path = tmp_path / "producer.sock"
    if request.param == "no-socket":
        return path, f"burrow send: no producer socket at {path} (is burrow-producer running? try --socket)\n"
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound.bind(str(path))  # bound, never listening: connect() is refused
    request.addfinalizer(bound.close)
    return path, f"burrow send: nothing listens on {path}\n"


def test_one_request_names_the_socket(dead_socket):
    path, expected = dead_socket
    result = send("--socket", str(path), "hello")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", expected)


def test_a_burst_says_the_same_once_instead_of_counting_failures(dead_socket):
    path, expected = dead_socket
    result = send("--socket", str(path), "--count", "50", "--concurrency", "4", "hello")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", expected)
