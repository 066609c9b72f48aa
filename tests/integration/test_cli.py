"""``burrow call`` through the library, on a real broker and consumer, and against brokers it
cannot reach: real sockets on loopback (a closed port, a TLS listener whose certificate it does not
trust, a listener that never speaks AMQP) and a name under ``.invalid`` (RFC 2606: never resolves).
"""

from __future__ import annotations

import dataclasses
import re
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from burrow.config import to_toml
from burrow.tools.localbroker import free_port

from pki import make_pki
from processes import burrow, write_config


def test_call_prints_each_reply(make_config, start_consumer, tmp_path):
    config = make_config()
    start_consumer(config)
    path = tmp_path / "producer.toml"
    write_config(config, path)
    result = burrow("call", "--config", str(path), "hello", "world")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Consumer processed: hello", "Consumer processed: world"]


def test_call_burst_prints_a_summary_line(make_config, start_consumer, tmp_path):
    config = make_config()
    start_consumer(config)
    path = tmp_path / "producer.toml"
    write_config(config, path)
    result = burrow("call", "--config", str(path), "--count", "300", "--concurrency", "16", "ping")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"300 requests, 0 failed, \d+ req/s, p50 [\d.]+ ms, p99 [\d.]+ ms\n", result.stdout), result.stdout


def test_call_reports_a_timeout_and_exits_non_zero(make_config, tmp_path):
    config = make_config()
    path = tmp_path / "producer.toml"
    write_config(config, path)
    result = burrow("call", "--config", str(path), "--timeout", "3", "nobody-home")
    assert result.returncode == 1
    assert result.stderr.startswith("error: RequestTimeout: no reply within the request's deadline"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_call_with_a_refused_login_names_the_broker_answer(make_config, tmp_path):
    config = make_config()
    config = dataclasses.replace(config, rabbitmq=dataclasses.replace(config.rabbitmq, password="wrong"))
    path = tmp_path / "producer.toml"
    write_config(config, path)
    result = burrow("call", "--config", str(path), "--timeout", "20", "hello")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("burrow call: reached the broker at ") and "ACCESS_REFUSED" in lines[0], lines[0]


# -- unreachable brokers: one line within --timeout, no pika log lines --------------------------------


def unreachable_call(tmp_path: Path, rabbitmq: str, timeout: float = 5.0) -> tuple[str, float]:
    """Run ``burrow call`` with ``[rabbitmq]`` settings ``rabbitmq``; return its one stderr line and
    how long it took. It must fail with exit 1, one line, nothing on stdout."""
    path = tmp_path / "producer.toml"
    path.write_text(f"[rabbitmq]\n{rabbitmq}\n")
    started = time.monotonic()
    result = burrow("call", "--config", str(path), "--timeout", f"{timeout:g}", "hello")
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0], elapsed


def test_call_to_a_closed_port_says_connection_refused(tmp_path):
    port = free_port()
    line, _elapsed = unreachable_call(tmp_path, f'host = "127.0.0.1"\nport = {port}')
    assert line == f"burrow call: cannot reach the broker at 127.0.0.1:{port}: connection refused"


def test_call_to_a_cluster_names_every_node_it_could_not_reach(tmp_path):
    first, second = free_port(), free_port()
    line, _elapsed = unreachable_call(tmp_path, f'hosts = ["127.0.0.1:{first}", "127.0.0.1:{second}"]')
    assert line == (f"burrow call: cannot reach the broker at 127.0.0.1:{first}: connection refused; "
                    f"cannot reach the broker at 127.0.0.1:{second}: connection refused")


def test_call_to_a_cluster_uses_the_node_that_answers(make_config, start_consumer, tmp_path):
    config = make_config()
    start_consumer(config)
    node = f"{config.rabbitmq.host}:{config.rabbitmq.port}"
    cluster = dataclasses.replace(config, rabbitmq=dataclasses.replace(
        config.rabbitmq, host="localhost", hosts=(f"127.0.0.1:{free_port()}", node)))
    path = tmp_path / "producer.toml"
    path.write_text(to_toml(cluster).replace('host = "localhost"\n', ""))
    path.chmod(0o600)
    result = burrow("call", "--config", str(path), "--timeout", "20", "hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Consumer processed: hello\n"


def test_call_to_a_name_that_does_not_resolve_says_name_not_found(tmp_path):
    line, _elapsed = unreachable_call(tmp_path, 'host = "broker.burrow-test.invalid"\nport = 5672')
    assert line.startswith("burrow call: cannot reach the broker at broker.burrow-test.invalid:5672: "
                           "name not found: broker.burrow-test.invalid ("), line


@pytest.fixture
def tls_listener(tmp_path: Path) -> Iterator[int]:
    """A TLS server on 127.0.0.1 with a certificate from the suite's throwaway CA, which the client
    does not trust (it is given no ``ca_file``); yields its port, records the handshake errors."""
    pki = make_pki(tmp_path / "pki")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _address = server.accept()
            except TimeoutError:
                continue
            with client:
                client.settimeout(5)
                try:
                    with context.wrap_socket(client, server_side=True):
                        pass
                except OSError:
                    pass  # the client refused our certificate: what the test wants

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_call_to_an_untrusted_tls_listener_says_tls_failure(tmp_path, tls_listener):
    line, _elapsed = unreachable_call(
        tmp_path, f'host = "localhost"\nport = {tls_listener}\n[rabbitmq.tls]\nenabled = true')
    assert re.fullmatch(
        rf"burrow call: cannot reach the broker at localhost:{tls_listener} \(TLS\): (127\.0\.0\.1|\[::1\]):{tls_listener}: "
        r"TLS failure: certificate not accepted \(unable to get local issuer certificate\).*", line), line


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that accepts connections and never says a word (a hung broker)."""
    server = socket.create_server(("127.0.0.1", 0))
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def test_call_to_a_broker_that_never_answers_gives_up_at_its_timeout(tmp_path, silent_listener):
    timeout = 2.0
    line, elapsed = unreachable_call(tmp_path, f'host = "127.0.0.1"\nport = {silent_listener}', timeout=timeout)
    assert line == (f"burrow call: reached the broker at 127.0.0.1:{silent_listener}, but the AMQP session "
                    f"did not open within {timeout:g} s")
    # The wait itself is the timeout; the rest is the interpreter starting and exiting (before this
    # change: 12 s with --timeout 2, the producer's 10 s connect wait plus the request's 2 s).
    assert timeout <= elapsed < timeout + 8, elapsed
