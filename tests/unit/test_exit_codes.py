"""Exit statuses every command shares: 78 (EX_CONFIG) for a configuration error, with one line naming
the file, key and value; 2 for a usage error. The units' RestartPreventExitStatus=78 relies on it."""

from __future__ import annotations

import pytest

from processes import run_command

EX_USAGE, EX_CONFIG = 2, 78

BAD = "[consumer]\nconcurrency = -3\n"
PROBLEM = "consumer.concurrency: must be between 1 and 1024, got -3"


@pytest.mark.parametrize(
    "command, args",
    [
        ("burrow-consumer", ["--config"]),
        ("burrow-producer", ["--config"]),
        ("burrow", ["check-config"]),
        ("burrow", ["call", "hello", "--config"]),
        ("burrow", ["status", "consumer", "--consumer-config"]),
    ],
    ids=["consumer", "producer", "check-config", "call", "status"],
)
def test_a_configuration_error_exits_78_with_one_line(tmp_path, command, args):
    config = tmp_path / "bad.toml"
    config.write_text(BAD)
    result = run_command(command, *args, str(config))
    assert result.returncode == EX_CONFIG, result
    assert result.stderr.splitlines() == [f"burrow: {config}: {PROBLEM}"], result.stderr


def test_a_missing_configuration_file_exits_78(tmp_path):
    result = run_command("burrow-consumer", "--config", str(tmp_path / "nowhere.toml"))
    assert result.returncode == EX_CONFIG
    assert result.stderr == f"burrow: {tmp_path / 'nowhere.toml'}: file does not exist\n"


@pytest.mark.parametrize(
    "command, args",
    [
        ("burrow-consumer", []),
        ("burrow-producer", ["--no-such-option"]),
        ("burrow", []),
        ("burrow", ["call", "--config", "x.toml"]),
        ("burrow", ["call", "--config", "x.toml", "--timeout", "0", "hi"]),
        ("burrow", ["send", "--timeout", "-1", "hi"]),
        ("burrow", ["status", "everything"]),
    ],
    ids=["daemon-no-config", "daemon-unknown-option", "no-command", "call-no-message", "call-zero-timeout",
         "send-negative-timeout", "status-unknown-which"],
)
def test_a_usage_error_exits_2(command, args):
    result = run_command(command, *args)
    assert result.returncode == EX_USAGE, result
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["burrow", "burrow-consumer", "burrow-producer"])
def test_version(command):
    from importlib import metadata

    result = run_command(command, "--version")
    assert (result.returncode, result.stdout) == (0, f"{command} {metadata.version('burrow')}\n")
