"""The man pages and bash completion that packaging/debian/make-cli-docs.py generates for the .deb
describe every command and option of the parsers in this checkout, render without warnings, and
the completion completes sub-commands, choices and file names."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_docs import PARSERS, complete, missing_from_page, option_strings, render, subcommands_of

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = tmp_path_factory.mktemp("cli-docs")
    subprocess.run([sys.executable, str(REPO / "packaging" / "debian" / "make-cli-docs.py"), str(outdir)],
                   check=True, capture_output=True, timeout=120, env={"SOURCE_DATE_EPOCH": "0", "PATH": "/usr/bin:/bin"})
    return outdir


@pytest.mark.parametrize("command", PARSERS)
def test_each_page_names_every_option_and_sub_command(generated, command):
    if not shutil.which("man"):
        pytest.fail("man is needed to render the pages: apt-get install --no-install-recommends man-db")
    text = render(generated / "man" / f"{command}.1")
    assert missing_from_page(command, text) == []
    assert "EXIT STATUS" in text and "\n       78     Configuration error (EX_CONFIG)" in text
    assert "1970-01-01" in text  # the date comes from SOURCE_DATE_EPOCH: rebuilds make the same page


def test_burrow_completion_offers_sub_commands_choices_and_files(generated, tmp_path, monkeypatch):
    script = generated / "completions" / "burrow"
    assert complete(script, "burrow", "") == subcommands_of("burrow")
    assert complete(script, "burrow", "dead", "") == subcommands_of("burrow", "dead")
    assert complete(script, "burrow", "status", "") == ["all", "producer", "consumer"]
    assert set(complete(script, "burrow", "check-config", "--")) == {"--help", "--role", "--secrets"}
    (tmp_path / "consumer.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    assert complete(script, "burrow", "call", "--config", "cons") == ["consumer.toml"]


@pytest.mark.parametrize("command", ["burrow-consumer", "burrow-producer"])
def test_daemon_completion_offers_its_options(generated, command):
    offered = complete(generated / "completions" / command, command, "--")
    assert set(offered) == option_strings(command) | {"--help"}
