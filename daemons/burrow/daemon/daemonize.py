"""``--daemon [--pidfile PATH]``: detach from the terminal on hosts without systemd.

Under systemd the daemons run in the foreground (``Type=notify``) and this module is not used.
Elsewhere :func:`run_detached` forks with python-daemon's ``DaemonContext`` and then runs the
daemon's main function in the child:

- the configuration is loaded and checked *before* detaching (by the caller), so a broken file is
  reported on the terminal with a non-zero exit status instead of vanishing into the background;
- stdout and stderr are kept (log lines still go where the operator redirected them);
- the umask is explicitly 0o027: files the daemon creates are never world-readable;
- SIGTERM/SIGINT/SIGHUP are left to the daemon's own handling (python-daemon would otherwise turn
  SIGTERM into an abrupt ``SystemExit`` that skips the drain);
- the pid file is locked with ``flock`` while the daemon runs, so a second copy refuses to start
  and a stale file left by a crash is simply reused;
- logging and the sd_notify socket are created by ``main`` after the context opened, because
  python-daemon closes every other file descriptor when it detaches.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Self

import daemon

logger = logging.getLogger(__name__)

#: Files the detached daemon creates are readable by its group at most.
DAEMON_UMASK = 0o027


class PidFileLocked(RuntimeError):
    """Another running process holds the pid file."""


class PidFile:
    """A pid file held with ``flock`` for the life of the process (a ``DaemonContext`` pidfile).

    The lock, not the file's existence, says whether the daemon runs: the kernel drops it when the
    process dies, so no stale-file clean-up is ever needed. The file is removed on a clean exit.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> Self:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise PidFileLocked(f"{self.path} is locked by a running process") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None


def check_pidfile(path: str) -> None:
    """Fail early, still on the terminal, when another daemon holds ``path``.

    python-daemon takes the lock only after forking, where an error would be invisible.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise PidFileLocked(f"{path} is locked by a running process") from None
        raise
    finally:
        os.close(fd)


def daemon_context(pidfile: str | None = None) -> daemon.DaemonContext:
    """A DaemonContext that detaches, keeps stdout/stderr and leaves our signals alone."""
    return daemon.DaemonContext(
        detach_process=True,
        working_directory="/",
        umask=DAEMON_UMASK,
        pidfile=PidFile(pidfile) if pidfile else None,
        stdout=sys.stdout,
        stderr=sys.stderr,
        prevent_core=True,
        signal_map={signal.SIGTTIN: None, signal.SIGTTOU: None, signal.SIGTSTP: None},
    )


def run_detached(main: Callable[[], int], pidfile: str | None = None) -> int:
    """Detach, run ``main`` in the daemon process and exit with its status there.

    The parent returns 0 inside python-daemon (it exits as soon as the child is forked); errors
    that can be seen before forking (a locked pid file) raise :class:`PidFileLocked` here.
    """
    if pidfile:
        check_pidfile(pidfile)
    sys.stdout.flush()
    sys.stderr.flush()
    with daemon_context(pidfile):
        logger.debug("Detached as pid %d", os.getpid())
        return main()


__all__ = ["DAEMON_UMASK", "PidFile", "PidFileLocked", "check_pidfile", "daemon_context", "run_detached"]
