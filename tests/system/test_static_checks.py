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


# No VirtualBox or libvirt here: --ignore-provider checks the Vagrantfile without one.
VALIDATE = ["vagrant", "validate", "--ignore-provider"]


@pytest.mark.parametrize(("brokers", "consumers"), [("1", "1"), ("3", "2"), ("5", "3")])
def test_vagrantfile_validates(brokers, consumers):
    result = run(VALIDATE, BURROW_BROKERS=brokers, BURROW_CONSUMERS=consumers)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vagrantfile validated successfully" in result.stdout
    for n in range(1, int(brokers) + 1):
        assert f"==> broker{n}:" in result.stdout
    assert f"==> broker{int(brokers) + 1}:" not in result.stdout
    assert f"==> consumer{consumers}:" in result.stdout


@pytest.mark.parametrize(("variable", "value"), [("BURROW_CONSUMERS", "0"), ("BURROW_BROKERS", "0"), ("BURROW_BROKERS", "x")])
def test_vagrantfile_rejects_bad_counts(variable, value):
    result = run(VALIDATE, **{variable: value})
    assert result.returncode != 0
    assert f"{variable} must be a whole number" in result.stdout + result.stderr


@pytest.mark.parametrize("debian", ["12", "13"])
def test_vagrantfile_validates_on_each_debian_release(debian):
    result = run(VALIDATE, BURROW_DEBIAN=debian, BURROW_BROKERS="3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vagrantfile validated successfully" in result.stdout


def test_vagrantfile_rejects_another_debian_release():
    result = run(VALIDATE, BURROW_DEBIAN="11")
    assert result.returncode != 0
    assert "BURROW_DEBIAN must be one of 12, 13" in result.stdout + result.stderr


@pytest.mark.parametrize("unit", ["burrow-consumer.service", "burrow-consumer@.service", "burrow-producer.service"])
def test_units_score_at_most_0_9_offline(unit):
    result = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(REPO / "systemd" / unit)])
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
