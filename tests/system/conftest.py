"""Fixtures for the systemd-nspawn system tests: the cached root, a session SSH key, the .deb.

Missing root privileges or tools fail the tests with the command that installs them, rather than
skipping them: a skipped system test would hide that the feature was never checked.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from .nspawn import DEFAULT_SUITE, RELEASES, REPO, SSHKey, ensure_root, reap_stale, require_root_and_tools

logger = logging.getLogger(__name__)

BUILD_DEB_SCRIPT = REPO / "scripts" / "build-deb.sh"


@pytest.fixture(scope="session")
def nspawn_root() -> Path:
    """The cached Debian 13 root every host is an overlay of (built on first use, about a minute).

    Leftovers of killed sessions (containers, copies, bridges) are removed first.
    """
    require_root_and_tools()
    reap_stale()
    return ensure_root()


@pytest.fixture(scope="module", params=list(RELEASES))
def suite(request: pytest.FixtureRequest) -> str:
    """A Debian release by codename: a test (or module fixture) that takes it runs on each release."""
    return str(request.param)


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> SSHKey:
    """A throwaway ed25519 key for this test session, installed as root's key on every host."""
    return SSHKey.generate(tmp_path_factory.mktemp("ssh"))


@pytest.fixture(scope="session")
def deb_for(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The package for a Debian release, by codename, built by scripts/build-deb.sh --dist (reused
    when daemons/, systemd/, packaging/... match; another release than the machine's is built in a
    cached root of it, about a minute the first time).

    Copied, with its lintian report, into the session's own folder: a build for a newer commit in
    another session replaces dist/'s package, which a long run (the cluster) still deploys later.
    """
    built: dict[str, Path] = {}

    def package(suite: str) -> Path:
        if suite not in built:
            result = subprocess.run(
                [str(BUILD_DEB_SCRIPT), "--dist", suite], check=True, stdout=subprocess.PIPE, text=True, cwd=REPO
            )
            source = REPO / result.stdout.strip().splitlines()[-1]
            folder = tmp_path_factory.mktemp(f"deb-{suite}")
            deb = folder / source.name
            shutil.copy2(source, deb)
            lintian = source.with_name(source.name.removesuffix(".deb") + ".lintian.txt")
            shutil.copy2(lintian, folder / lintian.name)
            logger.info("using %s (a copy of %s)", deb, source)
            built[suite] = deb
        return built[suite]

    return package


@pytest.fixture(scope="session")
def burrow_deb(deb_for: Callable[[str], Path]) -> Path:
    """The package for Debian 13, the release every nspawn test runs on (see ``deb_for``)."""
    return deb_for(DEFAULT_SUITE)
