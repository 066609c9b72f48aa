"""The .deb ships man pages and bash completion generated from the parsers of this checkout.

The build generates them (packaging/debian/make-cli-docs.py, from debian/rules), so this checks the
package itself: the files are where man and bash-completion look, the pages render without
warnings and name every option and sub-command the code has now, the completion works, and lintian
has nothing to say about the pages.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from cli_docs import PARSERS, complete, missing_from_page, render, subcommands_of  # tests/support

pytestmark = pytest.mark.system

SHIPPED = [f"./usr/share/man/man1/{command}.1.gz" for command in PARSERS] + [
    f"./usr/share/bash-completion/completions/{command}" for command in PARSERS
]


@pytest.fixture(scope="module")
def unpacked(burrow_deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deb")
    subprocess.run(["dpkg-deb", "-x", str(burrow_deb), str(root)], check=True)
    return root


def test_the_package_lists_the_pages_and_completions(burrow_deb):
    listing = subprocess.run(["dpkg-deb", "-c", str(burrow_deb)], check=True, capture_output=True, text=True).stdout
    files = {line.split()[-1] for line in listing.splitlines()}
    assert [path for path in SHIPPED if path not in files] == []


@pytest.mark.parametrize("command", PARSERS)
def test_each_shipped_page_is_current(unpacked, command):
    text = render(unpacked / "usr" / "share" / "man" / "man1" / f"{command}.1.gz")
    assert missing_from_page(command, text) == []


def test_the_shipped_completion_completes_sub_commands(unpacked):
    completions = unpacked / "usr" / "share" / "bash-completion" / "completions"
    assert complete(completions / "burrow", "burrow", "") == subcommands_of("burrow")
    assert "--config" in complete(completions / "burrow-consumer", "burrow-consumer", "--")


def test_lintian_has_nothing_to_say_about_the_pages(burrow_deb):
    report = burrow_deb.with_name(burrow_deb.name.removesuffix(".deb") + ".lintian.txt").read_text()
    assert [line for line in report.splitlines() if re.search(r"manpage|manual-page|bash-completion", line)] == []
