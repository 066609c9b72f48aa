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


@pytest.mark.parametrize("consumers", ["1", "3"])
def test_vagrantfile_validates(consumers):
    result = run(["vagrant", "validate"], BURROW_CONSUMERS=consumers)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vagrantfile validated successfully" in result.stdout


def test_vagrantfile_rejects_zero_consumers():
    result = run(["vagrant", "validate"], BURROW_CONSUMERS="0")
    assert result.returncode != 0
