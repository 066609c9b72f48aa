"""Operator tools behind the ``burrow`` command: the socket API client of ``burrow send``, the burst
runner with its progress bar and summary, ``check-config``, the broker probe of ``burrow call``, the
demo, and the throwaway RabbitMQ node that the demo, the tests and the benchmarks start. The daemons
never import from here.
"""

import argparse

#: shtab's ``shtab.FILE``, spelled out so that the commands do not import shtab at run time.
_COMPLETE_FILES = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f"}


def file_argument(action: argparse.Action) -> argparse.Action:
    """Mark an argparse argument as a file name, so the generated shell completion offers files."""
    action.complete = _COMPLETE_FILES  # type: ignore[attr-defined]
    return action

