"""The systemd units in systemd/, read as files: one shared hardening block, and the settings operators rely on.

How the units behave under a real systemd (start timeout, exit status 78, upgrades) is checked in
tests/system/test_daemons.py and test_upgrade.py; their ``systemd-analyze security`` score in
tests/system/test_static_checks.py.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS_DIR = REPO / "systemd"
SERVICES = sorted(UNITS_DIR.glob("*.service"))
ROLE = {"burrow-consumer.service": "consumer", "burrow-consumer@.service": "consumer", "burrow-producer.service": "producer"}
DIRECTIVE = re.compile(r"^([A-Za-z]+)=(.*)$")
SECONDS = re.compile(r"^(\d+)(s?)$")


def load_sync_script() -> ModuleType:
    """Import scripts/sync-unit-hardening.py (not a package module: it is run as a script)."""
    spec = importlib.util.spec_from_file_location("sync_unit_hardening", REPO / "scripts" / "sync-unit-hardening.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_units(folder: Path) -> None:
    """Copy the service units and the hardening source into ``folder``, to be edited there."""
    for path in (*SERVICES, UNITS_DIR / "hardening.conf"):
        shutil.copy(path, folder / path.name)


def parse(unit: Path) -> dict[str, dict[str, list[str]]]:
    """Return ``{section: {key: [values in order]}}`` of a unit file (comments and blanks skipped)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for line in unit.read_text(encoding="utf-8").splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif match := DIRECTIVE.match(line):
            sections[section][match.group(1)].append(match.group(2))
    return sections


def seconds(value: str) -> int:
    """A plain systemd time span in seconds (``90`` or ``90s``); anything else fails the test."""
    match = SECONDS.match(value)
    assert match, f"expected a number of seconds, got {value!r}"
    return int(match.group(1))


def test_the_three_daemon_units_are_the_ones_checked() -> None:
    assert [unit.name for unit in SERVICES] == sorted(ROLE)


def test_every_unit_has_the_shared_hardening_block() -> None:
    sync = load_sync_script()
    assert sync.stale_units(UNITS_DIR) == {}, "run scripts/sync-unit-hardening.py"
    block = sync.shared_block(UNITS_DIR / "hardening.conf")
    assert "ProtectSystem=strict" in block and "SystemCallFilter=@system-service" in block
    for unit in SERVICES:
        assert block in unit.read_text(encoding="utf-8"), unit


def test_the_check_notices_a_unit_edited_by_hand(tmp_path: Path) -> None:
    sync = load_sync_script()
    copy_units(tmp_path)
    edited = tmp_path / "burrow-producer.service"
    edited.write_text(edited.read_text(encoding="utf-8").replace("ProtectHome=yes", "ProtectHome=read-only"))
    assert list(sync.stale_units(tmp_path)) == [edited]
    sync_fixed = sync.with_block(edited, sync.shared_block(tmp_path / "hardening.conf"))
    assert sync_fixed == (UNITS_DIR / "burrow-producer.service").read_text(encoding="utf-8")


def test_the_consumer_template_is_the_plain_consumer_with_its_instance_name() -> None:
    plain = (UNITS_DIR / "burrow-consumer.service").read_text(encoding="utf-8").partition("[Unit]")[2]
    template = (UNITS_DIR / "burrow-consumer@.service").read_text(encoding="utf-8").partition("[Unit]")[2]
    differ = [(a, b) for a, b in zip(plain.splitlines(), template.splitlines(), strict=True) if a != b]
    assert differ == [
        ("Description=burrow consumer (request/response over RabbitMQ)",
         "Description=burrow consumer %i (request/response over RabbitMQ)"),
        ("ExecStart=/usr/bin/burrow-consumer --config /etc/burrow/consumer.toml",
         "ExecStart=/usr/bin/burrow-consumer --config /etc/burrow/consumer-%i.toml"),
    ]


def test_the_check_notices_a_template_edited_by_hand(tmp_path: Path) -> None:
    sync = load_sync_script()
    copy_units(tmp_path)
    template = tmp_path / "burrow-consumer@.service"
    template.write_text(template.read_text(encoding="utf-8").replace("RestartSec=2", "RestartSec=5"))
    assert sync.stale_units(tmp_path) == {template: (UNITS_DIR / template.name).read_text(encoding="utf-8")}
    plain = tmp_path / "burrow-consumer.service"
    plain.write_text(plain.read_text(encoding="utf-8").replace("RestartSec=2", "RestartSec=5"))
    template.write_text((UNITS_DIR / template.name).read_text(encoding="utf-8"))
    assert "RestartSec=5" in sync.stale_units(tmp_path)[template]


def test_every_hardening_directive_has_a_comment_above_its_group() -> None:
    block = load_sync_script().shared_block(UNITS_DIR / "hardening.conf").splitlines()
    commented = False
    for line in block:
        if line.startswith("#"):
            commented = True
        else:
            assert DIRECTIVE.match(line), f"not a directive or comment: {line!r}"
            assert commented, f"{line} has no comment above it"


@pytest.mark.parametrize("unit", SERVICES, ids=lambda unit: unit.name)
def test_units_point_to_the_manual_pages_and_the_readme(unit: Path) -> None:
    documentation = " ".join(parse(unit)["Unit"]["Documentation"]).split()
    assert documentation == [
        f"man:burrow-{ROLE[unit.name]}(1)",
        "man:burrow(1)",
        "file:/usr/share/doc/burrow/README.md",
    ]


def test_the_socket_unit_points_to_the_producer_manual() -> None:
    documentation = " ".join(parse(UNITS_DIR / "burrow-producer.socket")["Unit"]["Documentation"]).split()
    assert documentation[0] == "man:burrow-producer(1)"


def test_enabling_the_producer_enables_its_socket_too() -> None:
    assert parse(UNITS_DIR / "burrow-producer.service")["Install"]["Also"] == ["burrow-producer.socket"]


@pytest.mark.parametrize("unit", SERVICES, ids=lambda unit: unit.name)
def test_no_state_or_runtime_directory_since_the_daemons_write_no_files(unit: Path) -> None:
    service = parse(unit)["Service"]
    assert not [key for key in service if key.startswith(("StateDirectory", "RuntimeDirectory"))]


def test_the_code_uses_no_state_or_runtime_directory() -> None:
    """What justifies removing them: no module reads those variables or writes under those paths."""
    for source in (REPO / "daemons").rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        for needle in ("STATE_DIRECTORY", "RUNTIME_DIRECTORY", "/var/lib/burrow"):
            assert needle not in text, f"{source} uses {needle}"


@pytest.mark.parametrize("unit", SERVICES, ids=lambda unit: unit.name)
def test_a_start_times_out_but_waiting_for_the_broker_never_trips_the_start_limit(unit: Path) -> None:
    parsed = parse(unit)
    service = parsed["Service"]
    timeout = seconds(service["TimeoutStartSec"][-1])
    assert 30 <= timeout <= 300, "a manual systemctl start must return, but not before a slow broker connects"
    assert service["Restart"] == ["on-failure"], "after a start timeout the daemon must keep trying"
    burst = int(parsed["Unit"]["StartLimitBurst"][-1])
    interval = seconds(parsed["Unit"]["StartLimitIntervalSec"][-1])
    restart_delay = seconds(service["RestartSec"][-1])
    assert burst * (timeout + restart_delay) > interval, "a broker outage would leave the unit failed for good"


@pytest.mark.parametrize("unit", SERVICES, ids=lambda unit: unit.name)
def test_a_configuration_error_is_not_restarted(unit: Path) -> None:
    assert parse(unit)["Service"]["RestartPreventExitStatus"] == ["78"]
