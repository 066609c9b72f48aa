"""``burrow status`` against real ``burrow-producer`` and ``burrow-consumer`` processes on the test
broker: the lines it prints and the exit status scripts rely on (0 up, 1 degraded, 3 not running,
4 unknown, 78 bad configuration)."""

from __future__ import annotations

import dataclasses
import subprocess

from burrow.config import BurrowConfig, MetricsConfig
from burrow.tools.localbroker import free_port

from processes import burrow
from waiting import wait_for


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return burrow("status", *args, timeout=60)


def with_metrics(config: BurrowConfig, port: int) -> BurrowConfig:
    return dataclasses.replace(config, metrics=MetricsConfig(enabled=True, port=port))


def test_running_daemons_are_up_then_down_once_stopped(make_config, consumer_process, tmp_path):
    socket_path = tmp_path / "producer.sock"
    producer_config = with_metrics(make_config(producer={"socket": str(socket_path)}), free_port())
    consumer_port = free_port()
    consumer_config = with_metrics(make_config(), consumer_port)
    consumer = consumer_process(consumer_config, "consumer").start()
    producer = consumer_process(producer_config, "producer", role="producer").start()
    consumer.wait_ready()
    producer.wait_ready()

    result = status("--socket", str(socket_path), "--consumer-config", str(consumer.config_path))
    assert result.returncode == 0, result
    producer_line, consumer_line = result.stdout.splitlines()
    assert producer_line.startswith(f"producer  {socket_path}") and " up: broker connected, 0 in flight, classic reply queue, up " in producer_line
    assert "version " in producer_line and "0 reconnects" in producer_line, producer_line
    assert consumer_line.startswith(f"consumer  {consumer.config_path}") and " up: broker connected, version " in consumer_line
    assert consumer_line.endswith(f"http://127.0.0.1:{consumer_port}/metrics"), consumer_line

    consumer.kill()
    result = status("consumer", "--consumer-config", str(consumer.config_path))
    assert result.returncode == 3, result
    assert result.stdout.strip().endswith(f"down: not running: nothing listens on http://127.0.0.1:{consumer_port}/metrics")

    producer.kill()  # SIGKILL: the socket file stays, nobody listens on it
    result = status("producer", "--socket", str(socket_path))
    assert result.returncode == 3, result
    assert result.stdout.strip().endswith("down: not running: nothing listens on the socket")


def test_a_consumer_without_its_broker_is_degraded(make_config, consumer_process):
    config = with_metrics(make_config(rabbitmq={"port": free_port()}), free_port())
    consumer = consumer_process(config, "lonely").start()
    outcome: dict[str, subprocess.CompletedProcess[str]] = {}

    def answered() -> bool:
        outcome["result"] = status("consumer", "--consumer-config", str(consumer.config_path))
        return outcome["result"].returncode != 3  # 3 until its metrics endpoint listens

    wait_for(answered, 30, "the consumer's metrics endpoint")
    result = outcome["result"]
    assert result.returncode == 1, result
    assert " degraded: broker NOT connected, " in result.stdout, result.stdout


def test_a_consumer_without_metrics_is_unknown_and_the_producer_missing_is_down(tmp_path):
    config = tmp_path / "consumer.toml"
    config.write_text("[metrics]\nenabled = false\n")
    result = status("--socket", str(tmp_path / "nothing.sock"), "--consumer-config", str(config))
    assert result.returncode == 3, result  # down outranks unknown
    producer_line, consumer_line = result.stdout.splitlines()
    assert producer_line == f"producer  {tmp_path / 'nothing.sock'}".ljust(42) + " down: not running: no socket here"
    # No systemd runs this test's file (here PID 1 is not even systemd): nothing can tell its state.
    assert consumer_line.startswith(f"consumer  {config}".ljust(42) + " unknown: no endpoint to ask "
                                    "([metrics] enabled = false) and systemd cannot tell: "), consumer_line
    assert status("consumer", "--consumer-config", str(config)).returncode == 4


def test_a_bad_consumer_configuration_exits_78_naming_the_key(tmp_path):
    config = tmp_path / "consumer.toml"
    config.write_text("[metrics]\nport = 0\n")
    result = status("consumer", "--consumer-config", str(config))
    assert (result.returncode, result.stdout) == (78, ""), result
    assert result.stderr == f"burrow: {config}: metrics.port: must be a TCP port between 1 and 65535, got 0\n"
