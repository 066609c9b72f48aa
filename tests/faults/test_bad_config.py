"""Bad configuration files: every key with a value of the wrong type, a missing password file and
an unreadable credential each stop the real ``burrow-consumer`` with one line naming the file and
the key (exit 78, EX_CONFIG, no traceback). tests/unit/test_config.py covers the loader's messages one by one.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import typing
from pathlib import Path

import pytest

from burrow.config import BurrowConfig, load_config
from burrow.errors import ConfigError

pytestmark = pytest.mark.faults

EXIT_CONFIG = 78


def wrong_value(expected: typing.Any) -> str:
    """A TOML literal of a type other than ``expected``."""
    if expected is bool:
        return '"yes"'
    if expected in (int, float):
        return '"12"'
    if expected is str:
        return "12"
    return '"not-an-array"'  # tuple[str, ...]


def every_key() -> list[tuple[str, str, typing.Any]]:
    """(TOML table, key, field type) for every scalar key of every section, nested tables too."""
    keys = []

    def walk(table: str, cls: type) -> None:
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            expected = hints[item.name]
            if dataclasses.is_dataclass(expected):
                walk(f"{table}.{item.name}", expected)
            else:
                keys.append((table, item.name, expected))

    hints = typing.get_type_hints(BurrowConfig)
    for item in dataclasses.fields(BurrowConfig):
        if item.name != "path":
            walk(item.name, hints[item.name])
    return keys


KEYS = every_key()


@pytest.mark.parametrize("table, key, expected", KEYS, ids=[f"{t}.{k}" for t, k, _ in KEYS])
def test_every_key_with_a_wrong_type_is_named(tmp_path, table, key, expected):
    path = tmp_path / "bad.toml"
    path.write_text(f"[{table}]\n{key} = {wrong_value(expected)}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == f"{table}.{key}"
    assert str(caught.value).startswith(f"{path}: {table}.{key}: expected")


def run_consumer(config: Path, user: int | None = None) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("burrow-consumer") or str(Path(sys.executable).parent / "burrow-consumer")
    command = [executable, "--config", str(config)]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def assert_refused(result: subprocess.CompletedProcess[str], config: Path, key: str, problem: str) -> None:
    assert result.returncode == EXIT_CONFIG, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"burrow: {config}: {key}: ") and problem in lines[0], lines[0]


def test_daemon_refuses_a_wrong_type_with_one_line(tmp_path):
    config = tmp_path / "consumer.toml"
    config.write_text('[consumer]\nconcurrency = "eight"\n')
    assert_refused(run_consumer(config), config, "consumer.concurrency", "expected an integer, got string 'eight'")


def test_daemon_refuses_a_missing_password_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    config = tmp_path / "consumer.toml"
    config.write_text('[rabbitmq]\npassword_file = "${CREDENTIALS_DIRECTORY}/amqp-password"\n')
    assert_refused(run_consumer(config), config, "rabbitmq.password_file",
                   f"{tmp_path / 'creds' / 'amqp-password'} does not exist")


def test_daemon_refuses_an_unreadable_credential(tmp_path):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.fail("this test runs as root (CI does) to start the daemon as another user with setpriv")
    shared = Path(tempfile.mkdtemp(prefix="burrow-badcred-"))
    try:
        shared.chmod(0o755)
        secret = shared / "amqp-password"
        secret.write_text("s3cret\n")
        secret.chmod(0o600)  # root's; the daemon below runs as nobody
        config = shared / "consumer.toml"
        config.write_text(f'[rabbitmq]\npassword_file = "{secret}"\n')
        config.chmod(0o644)
        assert_refused(run_consumer(config, user=65534), config, "rabbitmq.password_file",
                       f"{secret} is not readable by this user")
    finally:
        shutil.rmtree(shared)
