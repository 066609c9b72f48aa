"""``burrow check-config`` on the configuration files the package installs, where the secret is absent.

The files are made by the package build's own step (packaging/debian/make-configs.py), so they are
byte for byte the conffiles of the .deb, ``password_file = "${CREDENTIALS_DIRECTORY}/..."`` included.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from burrow.config import load_config
from burrow.errors import ConfigError

from processes import burrow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "daemons" / "burrow" / "examples" / "burrow.toml"
EX_CONFIG = 78
SECRET = "s3cret-not-in-any-output"


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    """/etc/burrow as the package installs it: consumer.toml and producer.toml."""
    etc = tmp_path / "etc"
    etc.mkdir()
    subprocess.run(["/usr/bin/python3", str(REPO / "packaging" / "debian" / "make-configs.py"), str(EXAMPLE), str(etc)],
                   check=True, capture_output=True)
    return etc


def check(*args: str, credentials: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    if credentials is not None:
        env["CREDENTIALS_DIRECTORY"] = str(credentials)
    return burrow("check-config", *args, timeout=60, env=env)


@pytest.mark.parametrize("role", ["consumer", "producer"])
def test_shipped_file_passes_without_the_secret_and_says_where_it_is(shipped, role):
    path = shipped / f"{role}.toml"
    result = check(str(path), "--role", role)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: OK"
    assert ("  password: read at start from ${CREDENTIALS_DIRECTORY}/amqp-password (rabbitmq.password_file); "
            "not checked: CREDENTIALS_DIRECTORY not set here (systemd sets it from the unit's LoadCredential=)") in lines
    assert ("  handler: burrow.handlers:echo (imports)" in lines) == (role == "consumer")


def test_secrets_option_reads_the_credential_as_the_daemon_would(shipped, tmp_path):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "amqp-password").write_text(SECRET + "\n")
    path = shipped / "consumer.toml"
    result = check(str(path), "--secrets", credentials=credentials)
    assert result.returncode == 0, result.stderr
    assert f"  password: read from {credentials}/amqp-password (rabbitmq.password_file): OK" in result.stdout.splitlines()
    assert SECRET not in result.stdout + result.stderr


def test_without_secrets_an_existing_directory_is_named_but_not_read(shipped, tmp_path):
    path = shipped / "producer.toml"
    result = check(str(path), credentials=tmp_path / "nowhere")
    assert result.returncode == 0, result.stderr
    assert (f"  password: read at start from {tmp_path}/nowhere/amqp-password (rabbitmq.password_file); "
            "not checked without --secrets") in result.stdout.splitlines()


@pytest.mark.parametrize("present", [False, True], ids=["variable-unset", "file-missing"])
def test_secrets_option_fails_with_one_line_naming_the_key(shipped, tmp_path, present):
    path = shipped / "consumer.toml"
    credentials = tmp_path / "credentials" if present else None
    result = check(str(path), "--secrets", credentials=credentials)
    assert result.returncode == EX_CONFIG
    assert result.stdout == ""
    problem = (f"{credentials}/amqp-password does not exist" if present
               else "environment variable CREDENTIALS_DIRECTORY is not set")
    assert result.stderr == f"burrow: {path}: rabbitmq.password_file: {problem}\n"


@pytest.mark.parametrize(
    "old, new, key, problem",
    [
        ("concurrency = 8", "concurrency = 0", "consumer.concurrency", "must be between 1 and 1024, got 0"),
        ("heartbeat = 30", 'heartbeat = "30"', "rabbitmq.heartbeat", "expected an integer, got string '30'"),
        ('handler = "burrow.handlers:echo"', 'handler = "burrow.nothing_here:run"', "consumer.handler",
         "handler 'burrow.nothing_here:run': cannot import 'burrow.nothing_here'"),
    ],
    ids=["range", "type", "handler"],
)
def test_shipped_file_with_a_bad_value_names_file_key_and_value(shipped, old, new, key, problem):
    path = shipped / "consumer.toml"
    text = path.read_text()
    assert text.count(old) == 1, f"the example no longer has {old!r}"
    path.write_text(text.replace(old, new))
    result = check(str(path))
    assert result.returncode == EX_CONFIG
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"burrow: {path}: {key}: {problem}"), result.stderr


def test_loading_without_secrets_leaves_the_file_unread(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = tmp_path / "burrow.toml"
    path.write_text('[rabbitmq]\npassword_file = "${CREDENTIALS_DIRECTORY}/amqp-password"\n')
    config = load_config(path, read_secrets=False)
    assert config.rabbitmq.password_file == "${CREDENTIALS_DIRECTORY}/amqp-password"
    assert config.rabbitmq.password == ""
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY is not set"):
        load_config(path)


def test_loading_without_secrets_still_refuses_password_and_password_file(tmp_path):
    path = tmp_path / "burrow.toml"
    path.write_text('[rabbitmq]\npassword = "x"\npassword_file = "/nonexistent"\n')
    with pytest.raises(ConfigError, match="set either password or password_file, not both"):
        load_config(path, read_secrets=False)
