"""Fixtures for the systemd-nspawn system tests: the cached root, a session SSH key, the .deb.

Missing root privileges or tools fail the tests with the command that installs them, rather than
skipping them: a skipped system test would hide that the feature was never checked.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from .nspawn import REPO, SSHKey, ensure_root, reap_stale, require_root_and_tools

logger = logging.getLogger(__name__)

BUILD_DEB_SCRIPT = REPO / "scripts" / "build-deb.sh"


@pytest.fixture(scope="session")
def nspawn_root() -> Path:
    """The cached bookworm root every host is an overlay of (built on first use, about a minute).

    Leftovers of killed sessions (containers, copies, bridges) are removed first.
    """
    require_root_and_tools()
    reap_stale()
    return ensure_root()


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> SSHKey:
    """A throwaway ed25519 key for this test session, installed as root's key on every host."""
    return SSHKey.generate(tmp_path_factory.mktemp("ssh"))


@pytest.fixture(scope="session")
def burrow_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package built by scripts/build-deb.sh (reused when daemons/, systemd/, packaging/... match).

    Copied, with its lintian report, into the session's own folder: a build for a newer commit in
    another session replaces dist/'s package, which a long run (the cluster) still deploys later.
    """
    result = subprocess.run([str(BUILD_DEB_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True, cwd=REPO)
    built = REPO / result.stdout.strip().splitlines()[-1]
    folder = tmp_path_factory.mktemp("deb")
    deb = folder / built.name
    shutil.copy2(built, deb)
    lintian = built.with_name(built.name.removesuffix(".deb") + ".lintian.txt")
    shutil.copy2(lintian, folder / lintian.name)
    logger.info("using %s (a copy of %s)", deb, built)
    return deb
