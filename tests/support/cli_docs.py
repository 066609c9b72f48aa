"""What the generated man pages and bash completion must contain: every command, option and
sub-command of burrow's argparse parsers as they are in this checkout.

tests/unit/test_cli_docs.py checks the generator's output; tests/system/test_package_cli_docs.py
checks the pages and completion inside the built .deb, so a package built from stale parsers fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from burrow import cli

#: Each shipped command and the function that builds its parser.
PARSERS = {"burrow": cli.build_parser, "burrow-consumer": cli.consumer_parser, "burrow-producer": cli.producer_parser}


def _walk(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The parser and, depth first, every sub-command's parser, with the sub-command's name."""
    yield "", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for inner, inner_parser in _walk(sub):
                    yield f"{name} {inner}".strip(), inner_parser


def subcommands(command: str) -> list[str]:
    """The sub-commands of ``command``, nested ones as ``"dead list"`` (empty for the daemons)."""
    return [name for name, _parser in _walk(PARSERS[command]()) if name]


def subcommands_of(command: str, *path: str) -> list[str]:
    """The sub-commands one level below ``path`` (``()``: the top level), as completion offers them."""
    prefix = " ".join(path)
    below = [name.removeprefix(prefix).strip() for name in subcommands(command) if name.startswith(prefix)]
    return [name for name in below if name and " " not in name]


def option_strings(command: str) -> set[str]:
    """Every long option of ``command`` and of its sub-commands, ``--help`` aside."""
    return {
        option
        for _name, parser in _walk(PARSERS[command]())
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }


def render(page: Path) -> str:
    """The page as ``man`` shows it, failing on any warning man or groff gives about its source."""
    env = {**os.environ, "MANWIDTH": "200", "LC_ALL": "C.UTF-8", "MAN_KEEP_FORMATTING": ""}
    result = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0 and result.stderr == "", f"{page}: {result.stderr}"
    return result.stdout


def missing_from_page(command: str, text: str) -> list[str]:
    """Options and sub-commands of ``command`` that the rendered page ``text`` does not mention."""
    wanted = sorted(option_strings(command)) + [f"{command} {name}" for name in subcommands(command)]
    return [word for word in wanted if word not in text]


def complete(script: Path, *words: str) -> list[str]:
    """What bash offers after ``words`` (the last one being completed) with the completion ``script``."""
    command = words[0]
    program = (
        f'source "{script}"\n'
        'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}\n'
        f'spec=$(complete -p {command}) || exit 3\n'
        'function=${spec#*-F }; function=${function%% *}\n'
        '"$function" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(["bash", "--norc", "-c", program, "complete", *words], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]
