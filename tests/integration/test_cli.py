"""``burrow call`` through the library, on a real broker and consumer."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from burrow.config import to_toml


def burrow(*args: str) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "burrow"
    return subprocess.run([str(executable), *args], capture_output=True, text=True, timeout=120)


def test_call_prints_each_reply(make_config, start_consumer, tmp_path):
    config = make_config()
    start_consumer(config)
    path = tmp_path / "producer.toml"
    path.write_text(to_toml(config))
    result = burrow("call", "--config", str(path), "hello", "world")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Consumer processed: hello", "Consumer processed: world"]


def test_call_burst_prints_a_summary_line(make_config, start_consumer, tmp_path):
    config = make_config()
    start_consumer(config)
    path = tmp_path / "producer.toml"
    path.write_text(to_toml(config))
    result = burrow("call", "--config", str(path), "--count", "300", "--concurrency", "16", "ping")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"300 requests, 0 failed, \d+ req/s, p50 [\d.]+ ms, p99 [\d.]+ ms\n", result.stdout), result.stdout


def test_call_reports_a_timeout_and_exits_non_zero(make_config, tmp_path):
    config = make_config()
    path = tmp_path / "producer.toml"
    path.write_text(to_toml(config))
    result = burrow("call", "--config", str(path), "--timeout", "0.5", "nobody-home")
    assert result.returncode == 1
    assert "RequestTimeout" in result.stderr
