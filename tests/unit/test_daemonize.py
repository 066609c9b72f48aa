"""--daemon: python-daemon detaches, the umask is 0o027, the pid file is locked and cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from burrow.daemon.daemonize import PidFileLocked, run_detached

    work = Path(sys.argv[1])

    def main() -> int:
        umask = os.umask(0o027)
        (work / "out").write_text(f"{os.getpid()} {umask:o} {os.getppid()}")
        deadline = time.monotonic() + 30
        while not (work / "stop").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return 0

    try:
        sys.exit(run_detached(main, str(work / "burrow.pid")))
    except PidFileLocked as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
    """
)


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_detach_lock_and_cleanup(tmp_path: Path) -> None:
    launch = [sys.executable, "-c", CHILD, str(tmp_path)]
    # The daemon keeps stdout/stderr: files, not pipes, or run() would wait for the daemon's end.
    with open(tmp_path / "stderr", "w") as stderr:
        parent = subprocess.run(launch, stdout=subprocess.DEVNULL, stderr=stderr, timeout=30)
    assert parent.returncode == 0, (tmp_path / "stderr").read_text()
    out = tmp_path / "out"
    try:
        _wait_for(out.exists)
        _wait_for(lambda: len(out.read_text().split()) == 3)
        pid, umask, ppid = out.read_text().split()
        assert umask == "27"
        assert (tmp_path / "burrow.pid").read_text().strip() == pid
        assert int(pid) != os.getpid() and int(ppid) != os.getpid()  # detached: not our child
        second = subprocess.run(launch, capture_output=True, text=True, timeout=30)
        assert second.returncode == 1 and "locked by a running process" in second.stderr
    finally:
        (tmp_path / "stop").touch()
    _wait_for(lambda: not (tmp_path / "burrow.pid").exists())
