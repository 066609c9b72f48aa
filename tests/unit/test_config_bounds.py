"""Every numeric key is a finite number within its documented range, or ``burrow check-config``
refuses the file with exit status 78 and one line naming the key, the value and the range.

The keys and ranges come from the schema itself (:func:`burrow.config.rules.walk`), so a key added
later is covered here without touching this file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from burrow import cli
from burrow.config import BurrowConfig
from burrow.config.rules import Between, walk

from processes import burrow, write_toml

EX_CONFIG = 78
NUMERIC = [key for key in walk(BurrowConfig) if isinstance(key.rule, Between)]


def _text(value: float, kind: type) -> str:
    return str(int(value)) if kind is int else repr(float(value))


def refused(key) -> list[str]:
    """TOML texts the key must refuse: infinities, a float overflow, -1, just past each end, nan."""
    rule = key.rule
    texts = ["inf", "-inf", "1e309", "nan", "-1", _text(rule.high + 1, key.kind)]
    if rule.low > 0:
        texts.append("0" if key.kind is int else repr(rule.low / 2))
    return texts


CASES = [pytest.param(key, text, id=f"{key.dotted}={text}") for key in NUMERIC for text in refused(key)]
#: The name given to a table of named tables (``<name>`` in a key such as consumer.services.<name>.prefetch).
SAMPLE_NAME = "sample"
#: What such a table needs besides the key under test.
REQUIRED_IN_NAMED_TABLE = 'handler = "burrow.handlers:echo"\n'


def concrete(dotted: str) -> str:
    return dotted.replace("<name>", SAMPLE_NAME)


def write(tmp_path: Path, dotted: str, text: str) -> Path:
    section, _, name = concrete(dotted).rpartition(".")
    required = REQUIRED_IN_NAMED_TABLE if "<name>" in dotted else ""
    return write_toml(tmp_path, f"[{section}]\n{required}{name} = {text}\n")


def check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(["check-config", str(path)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_every_numeric_key_is_covered():
    assert len(NUMERIC) >= 20
    assert {"producer.request_timeout", "producer.socket_mode", "rabbitmq.heartbeat", "consumer.prefetch"} <= {
        key.dotted for key in NUMERIC}


@pytest.mark.parametrize("key, text", CASES)
def test_out_of_range_values_are_refused_naming_key_value_and_range(tmp_path, capsys, key, text):
    path = write(tmp_path, key.dotted, text)
    status, out, err = check_config(path, capsys)
    assert status == EX_CONFIG, out
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"burrow: {path}: {concrete(key.dotted)}: "), err
    value = tomllib.loads(f"v = {text}")["v"]
    shown = {repr(value), oct(value) if isinstance(value, int) else repr(value)}
    assert any(f"got {show}" in lines[0] or f"got number {show}" in lines[0] for show in shown), lines[0]
    assert f"between {key.rule.bounds(' and ')}" in lines[0]


@pytest.mark.parametrize("key", NUMERIC, ids=lambda key: key.dotted)
def test_both_ends_of_each_range_are_accepted(tmp_path, capsys, key):
    for end in (key.rule.low, key.rule.high):
        path = write(tmp_path, key.dotted, _text(end, key.kind))
        status, out, err = check_config(path, capsys)
        assert status == 0 and err == "", f"{key.dotted} = {end}: {err}"
        assert out.startswith(f"{path}: OK")


def test_the_daemons_command_refuses_an_infinite_request_timeout(tmp_path):
    path = write(tmp_path, "producer.request_timeout", "inf")
    result = burrow("check-config", str(path))
    assert result.returncode == EX_CONFIG
    assert result.stderr == (f"burrow: {path}: producer.request_timeout: must be between 0.001 and 4294967 seconds, "
                             "got inf\n")
