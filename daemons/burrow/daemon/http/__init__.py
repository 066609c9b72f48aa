"""The producer daemon's local HTTP/1.1 API on a Unix socket, served by uvicorn on uvloop.

One module a job, so that a new endpoint touches :mod:`~burrow.daemon.http.app` alone:

- :mod:`~burrow.daemon.http.app`: the routes (the API reference is its docstring) and the one
  mapping of failures to statuses;
- :mod:`~burrow.daemon.http.inputs`: reading a request's headers and body within their limits;
- :mod:`~burrow.daemon.http.answers`: building every answer, counted by status;
- :mod:`~burrow.daemon.http.protocol`: one connection, uvicorn's protocol plus the limits this API
  keeps before any request reaches the application (and the uvicorn internals that relies on);
- :mod:`~burrow.daemon.http.server`: :class:`HttpApi`, the socket, the loop thread and the drain.

The listening socket itself (systemd's or our own) comes from :mod:`burrow.daemon.sockets`.
"""

from burrow.daemon.http.app import ProducerAPI
from burrow.daemon.http.server import DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT, HttpApi

__all__ = ["DEFAULT_MAX_CONNECTIONS", "DEFAULT_READ_TIMEOUT", "HttpApi", "ProducerAPI"]
