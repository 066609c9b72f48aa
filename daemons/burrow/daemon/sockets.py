"""The producer API's listening Unix socket: systemd's (socket activation) or one bound here.

Under systemd socket activation (``burrow-producer.socket``) the listening socket arrives as fd 3
(``LISTEN_FDS``/``LISTEN_PID``): clients connecting while the producer restarts wait in the
kernel's queue, and the next producer answers them. Without it, :func:`bind_socket` creates the
socket file itself; :class:`burrow.daemon.http.server.HttpApi` takes whichever it gets.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from collections.abc import Mapping

logger = logging.getLogger(__name__)

#: First file descriptor systemd passes (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3


def inherited_socket(environ: Mapping[str, str] | None = None) -> socket.socket | None:
    """Return the listening socket systemd passed us (socket activation), or ``None``.

    Follows ``sd_listen_fds(unset_environment=1)``: the fds are ours only when ``LISTEN_PID`` is
    this process, and the variables are removed from ``os.environ`` so child processes (a handler's
    subprocess) do not mistake fd 3 for theirs. Raises ``ValueError`` if fd 3 is not a listening
    Unix stream socket, which means the .socket unit was edited wrongly.
    """
    env = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID", ""), env.get("LISTEN_FDS", "")
    if environ is None:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    if not pid or not count or pid != str(os.getpid()):
        return None
    try:
        fds = int(count)
    except ValueError:
        logger.warning("Ignoring LISTEN_FDS=%r: not a number", count)
        return None
    if fds < 1:
        return None
    if fds > 1:
        logger.warning("systemd passed %d sockets; using the first (fd %d)", fds, LISTEN_FDS_START)
    sock = socket.socket(fileno=LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ValueError(f"fd {LISTEN_FDS_START} from systemd is not a Unix stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ValueError(f"fd {LISTEN_FDS_START} from systemd is not listening")
    sock.set_inheritable(False)
    return sock


def bind_socket(path: str, mode: int, backlog: int = 128) -> socket.socket:
    """Create, bind and listen on a Unix socket at ``path`` with permissions ``mode``.

    A leftover socket file from a crashed producer is replaced, but one that still answers is not:
    two producers on one path would steal each other's clients. The file is created under a umask
    that leaves only the owner any access, then widened to ``mode``, so no client can connect
    while it is more open than configured.
    """
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if not stat.S_ISSOCK(existing.st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(path)
            else:
                raise OSError(errno.EADDRINUSE, f"another process is listening on {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        previous = os.umask(0o077)
        try:
            sock.bind(path)
        finally:
            os.umask(previous)
        os.chmod(path, mode)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


__all__ = ["LISTEN_FDS_START", "bind_socket", "inherited_socket"]
