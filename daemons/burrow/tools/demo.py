"""``burrow demo``: the whole path on one machine, in under a minute.

Starts a throwaway RabbitMQ node (Debian's ``rabbitmq-server``), runs ``burrow-consumer`` as a real
child process on it, sends a few requests and prints their replies, then a concurrent burst with a
progress bar and a summary line, and finally stops the consumer with SIGTERM (it drains and exits
0) and removes the node.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import wait
from pathlib import Path

from burrow.tools.burst import run_burst
from burrow.config import BurrowConfig, RabbitMQConfig, to_toml
from burrow.tools.localbroker import LocalBroker
from burrow.producer import Producer

logger = logging.getLogger(__name__)

READY_TIMEOUT = 60.0


def _consumer_command(config_path: Path) -> list[str]:
    executable = shutil.which("burrow-consumer") or str(Path(sys.executable).parent / "burrow-consumer")
    return [executable, "--config", str(config_path)]


def _wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise RuntimeError(f"burrow-consumer exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.1)
    raise RuntimeError(f"burrow-consumer not ready after {timeout:.0f}s:\n{log.read_text()}")


def run(count: int, concurrency: int) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="burrow-demo-"))
    try:
        print("1. Starting a throwaway RabbitMQ node (Debian's rabbitmq-server) on a free loopback port...")
        with LocalBroker(name="burrow-demo") as broker:
            config = dataclasses.replace(BurrowConfig(), rabbitmq=RabbitMQConfig.from_url(broker.amqp_url))
            config_path = workdir / "consumer.toml"
            config_path.write_text(to_toml(config))
            config_path.chmod(0o600)
            log_path = workdir / "consumer.log"
            print(f"   broker up at 127.0.0.1:{broker.port}")
            print(f"2. Starting burrow-consumer --config {config_path} ...")
            with open(log_path, "ab") as log:
                consumer = subprocess.Popen(_consumer_command(config_path), stdout=log, stderr=subprocess.STDOUT)
            try:
                _wait_for_line(log_path, "Consumer ready", consumer, READY_TIMEOUT)
                print("   consumer ready (8 workers, quorum request queue, confirms on both legs)")
                with Producer(config, instance_id="demo") as producer:
                    print("3. Ten concurrent requests through the Python API:")
                    futures = [producer.submit(f"hello {i}".encode()) for i in range(10)]
                    wait(futures, timeout=30)
                    for future in futures:
                        print(f"   {future.result().decode()}")
                    print(f"4. A burst of {count} requests, {concurrency} in flight:")
                    result = run_burst(lambda body: producer.call(body, timeout=30), [b"x" * 100],
                                       count=count, concurrency=concurrency, show_progress=True)
                    print(f"   {result.line()}")
                print("5. Stopping the consumer with SIGTERM (it drains, then exits 0)...")
                consumer.send_signal(signal.SIGTERM)
                code = consumer.wait(timeout=60)
                print(f"   burrow-consumer exited with {code}")
                return 0 if code == 0 and not result.failed else 1
            finally:
                if consumer.poll() is None:
                    consumer.kill()
                    consumer.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        print("Done: broker stopped and removed.")
