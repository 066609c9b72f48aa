"""Checks of the deployment files that need no host: ansible-lint's production profile, Vagrant,
``systemd-analyze security --offline`` of the units as they are in the repository.

``vagrant validate`` runs with ``--ignore-provider``: Debian's vagrant, installed with
``--no-install-recommends`` as scripts/install-system-test-deps.sh does, has no provider (VirtualBox,
libvirt), and without the flag validation stops at "No usable default provider". The flag skips only
the provider blocks' settings; Ruby still parses the whole file and every machine definition.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from .nspawn import REPO

pytestmark = pytest.mark.system

#: The highest exposure a burrow unit may have (the README says 0.9; test_daemons.py checks the same
#: figure for the units as installed, in a booted container).
MAX_EXPOSURE = 0.9


def run(cmd: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, **env})


def test_ansible_lint_production_profile_is_clean():
    result = run([str(REPO / "ansible" / "lint.sh")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed" in result.stdout + result.stderr


@pytest.mark.parametrize("consumers", ["1", "3"])
def test_vagrantfile_validates(consumers):
    result = run(["vagrant", "validate", "--ignore-provider"], BURROW_CONSUMERS=consumers)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vagrantfile validated successfully" in result.stdout
    machines = ["broker", "producer", *(f"consumer{n}" for n in range(1, int(consumers) + 1))]
    assert all(f"==> {machine}:" in result.stdout for machine in machines), result.stdout


def test_vagrantfile_rejects_zero_consumers():
    result = run(["vagrant", "validate", "--ignore-provider"], BURROW_CONSUMERS="0")
    assert result.returncode != 0
    assert "BURROW_CONSUMERS must be between 1 and 20" in result.stdout + result.stderr


@pytest.mark.parametrize("unit", ["burrow-consumer.service", "burrow-consumer@.service", "burrow-producer.service"])
def test_units_score_at_most_0_9_offline(unit):
    result = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(REPO / "systemd" / unit)])
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
