"""The .deb's version (scripts/build-deb.sh --print-version): each build of a changed tree sorts after the last.

Runs the script on a copy of the package's inputs in a throwaway git repository with fixed commit
times, so the expected versions are exact; apt's order is checked with ``dpkg --compare-versions``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INPUTS = ("daemons", "pyproject.toml", "packaging", "scripts/build-deb.sh", "README.md", "systemd")
BASE = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
#: The suffix of a package built for this machine's Debian release (e.g. ~deb12u1 on Debian 12).
HOST_SUFFIX = "~deb{}u1".format(
    dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)[
        "VERSION_ID"
    ].strip('"')
)


def git(tree: Path, *args: str, when: str = "2026-01-02T03:04:05Z") -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "GIT_AUTHOR_DATE": when,
        "GIT_COMMITTER_DATE": when,
    }
    return subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True, text=True, env=env).stdout


def version(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "BURROW_DEB_VERSION"}
    return subprocess.run(
        [str(tree / "scripts" / "build-deb.sh"), "--print-version", *args], capture_output=True, text=True, env=env
    )


def newer(a: str, b: str) -> bool:
    """True when dpkg (and so apt) orders version ``a`` after ``b``."""
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b], check=False).returncode == 0


def touch(path: Path, stamp: str) -> None:
    """Set the mtime of ``path`` to the UTC time ``stamp`` (YYYYMMDDHHMMSS)."""
    seconds = int(subprocess.run(["date", "-u", "-d", f"{stamp[:8]} {stamp[8:10]}:{stamp[10:12]}:{stamp[12:]}", "+%s"],
                                 check=True, capture_output=True, text=True).stdout)
    os.utime(path, (seconds, seconds))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A git repository with the package's inputs, committed at 2026-01-02 03:04:05 UTC."""
    root = tmp_path / "burrow"
    for name in INPUTS:
        source = REPO / name
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(source, target)
    (root / "tests").mkdir()
    (root / "tests" / "notes.txt").write_text("not an input\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_a_clean_checkout_is_named_by_commit_time_and_hash(tree: Path) -> None:
    sha = git(tree, "rev-parse", "--short=7", "HEAD").strip()
    result = version(tree)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{BASE}~git20260102030405.{sha}{HOST_SUFFIX}"
    assert newer(BASE, result.stdout.strip()), "a development build must sort before the release"


def test_changes_make_a_dirty_version_that_upgrades_the_commit_and_the_next_commit_upgrades_it(tree: Path) -> None:
    clean = version(tree).stdout.strip()
    (tree / "tests" / "notes.txt").write_text("changed, but not packaged\n")
    assert version(tree).stdout.strip() == clean
    handler = tree / "daemons" / "burrow" / "handlers.py"
    handler.write_text(handler.read_text(encoding="utf-8") + "\n# changed\n", encoding="utf-8")
    touch(handler, "20260103101112")
    dirty = version(tree).stdout.strip()
    assert re.fullmatch(rf"{re.escape(BASE)}~git20260103101112\.[0-9a-f]{{7}}\.dirty{HOST_SUFFIX}", dirty), dirty
    assert newer(dirty, clean)
    git(tree, "commit", "-q", "-am", "second", when="2026-01-04T00:00:00Z")
    committed = version(tree).stdout.strip()
    assert committed.startswith(f"{BASE}~git20260104000000.") and newer(committed, dirty)


def test_a_deleted_input_makes_the_tree_dirty(tree: Path) -> None:
    (tree / "systemd" / "hardening.conf").unlink()
    assert version(tree).stdout.strip().endswith(f".dirty{HOST_SUFFIX}")


def test_a_tree_without_git_is_named_by_its_newest_input(tree: Path) -> None:
    shutil.rmtree(tree / ".git")
    for path in tree.rglob("*"):
        touch(path, "20260105000000")
    touch(tree / "pyproject.toml", "20260106070809")
    assert version(tree).stdout.strip() == f"{BASE}~git20260106070809.nogit{HOST_SUFFIX}"


def test_an_explicit_version_wins_and_a_bad_one_is_refused(tree: Path) -> None:
    assert version(tree, "--version", f"{BASE}~older").stdout.strip() == f"{BASE}~older"
    refused = version(tree, "--version", "not a version")
    assert refused.returncode == 2 and "not a valid Debian version: not a version" in refused.stderr


def test_each_release_gets_its_own_version_of_one_tree(tree: Path) -> None:
    sha = git(tree, "rev-parse", "--short=7", "HEAD").strip()
    bookworm = version(tree, "--dist", "bookworm").stdout.strip()
    trixie = version(tree, "--dist", "trixie").stdout.strip()
    assert bookworm == f"{BASE}~git20260102030405.{sha}~deb12u1"
    assert trixie == f"{BASE}~git20260102030405.{sha}~deb13u1"
    assert newer(trixie, bookworm) and newer(BASE, trixie), "both development builds sort before the release"


def test_an_unknown_release_is_refused(tree: Path) -> None:
    refused = version(tree, "--dist", "bullseye")
    assert refused.returncode == 2 and "cannot build for 'bullseye'" in refused.stderr
