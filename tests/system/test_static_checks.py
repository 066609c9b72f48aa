"""Checks of the deployment files that need no host: ansible-lint's production profile, Vagrant."""

from __future__ import annotations

import os
import subprocess

import pytest

from .nspawn import REPO

pytestmark = pytest.mark.system


def run(cmd: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, **env})


def test_ansible_lint_production_profile_is_clean():
    result = run([str(REPO / "ansible" / "lint.sh")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed" in result.stdout + result.stderr


def validate(consumers: str) -> subprocess.CompletedProcess[str]:
    """``vagrant validate`` of the Vagrantfile alone: a host without a provider (CI) would fail
    every validation on the missing provider, whatever the file says, without ``--ignore-provider``."""
    return run(["vagrant", "validate", "--ignore-provider"], BURROW_CONSUMERS=consumers)


@pytest.mark.parametrize("consumers", ["1", "3"])
def test_vagrantfile_validates(consumers):
    result = validate(consumers)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vagrantfile validated successfully" in result.stdout


@pytest.mark.parametrize("consumers", ["0", "21"])
def test_vagrantfile_rejects_a_consumer_count_out_of_range(consumers):
    result = validate(consumers)
    assert result.returncode != 0
    assert "BURROW_CONSUMERS must be between 1 and 20" in result.stdout + result.stderr, result.stdout + result.stderr
