"""Exceptions that burrow's public API raises.

Callers catch these from ``Producer.call`` or ``Future.result``; the HTTP API maps each one to a
status code, so every failure a caller can see has exactly one class here.
"""

from __future__ import annotations


class BurrowError(Exception):
    """Base class of every error burrow raises on purpose."""


class ConfigError(BurrowError):
    """A configuration file is missing, unreadable or wrong.

    ``str()`` is one line naming the file, the key and what is wrong, fit for an operator's terminal.
    """

    def __init__(self, path: str, key: str | None, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem}")


class HandlerLoadError(BurrowError):
    """``consumer.handler`` does not name an importable callable with a usable signature."""


class RequestTimeout(BurrowError, TimeoutError):
    """No reply arrived before the request's deadline; the request will not be processed later.

    ``confirmed`` says whether the broker had confirmed the request's publish by then. ``True``:
    the broker had taken it, so it may have run and its reply been lost, or it waits to be
    dead-lettered as ``stale``. ``False``: the broker never confirmed it (it was never published,
    or a broker that could not take it, such as a cluster node cut off from the others or one with
    a memory alarm, held it unconfirmed); the message says so. ``None``: not known, as when the
    producer daemon's HTTP API stops waiting for a producer that never answered.
    """

    def __init__(self, message: str, *, confirmed: bool | None = None) -> None:
        self.confirmed = confirmed
        super().__init__(f"{message}: the broker never confirmed it" if confirmed is False else message)


class RemoteError(BurrowError):
    """The consumer's handler raised; ``type_name`` and ``message`` describe the remote exception."""

    def __init__(self, type_name: str, message: str, remote_traceback: str | None = None) -> None:
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
        super().__init__(f"{type_name}: {message}")


class Rejected(BurrowError):
    """burrow refused the request and dead-lettered it: no handler finished it, and none will.

    A sibling of :class:`RemoteError`, not a subclass: a ``RemoteError`` means the handler ran and
    raised; a ``Rejected`` request was never (successfully) handled, so retrying the same request
    unchanged fails the same way. ``reason`` is a stable code (``too_large``, ``content_type``,
    ``invalid_utf8``, ``stale``, ``delivery_limit``) and ``message`` says what was wrong. The
    request stays in the dead-letter queue for ``burrow dead``.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"request rejected ({reason}): {message}")


class DeliveryLimitExceeded(Rejected):
    """The request was delivered ``delivery_count`` times and no consumer finished it (it crashed or
    stalled every consumer that took it), so the broker dead-lettered it.

    ``first_death_reason`` and ``first_death_queue`` are the broker's ``x-first-death-*`` headers;
    ``died_at`` is the UNIX time the broker dead-lettered it.
    """

    def __init__(self, message: str, *, delivery_count: int | None, first_death_reason: str,
                 first_death_queue: str, died_at: float | None) -> None:
        self.delivery_count = delivery_count
        self.first_death_reason = first_death_reason
        self.first_death_queue = first_death_queue
        self.died_at = died_at
        super().__init__("delivery_limit", message)


class PublishError(BurrowError):
    """The broker refused the request (nack, unroutable or an error reply from the broker)."""


class UnroutableError(PublishError):
    """The request exchange routed the request to no queue (``mandatory`` returned it)."""


class UnknownService(UnroutableError):
    """No queue serves the named ``service``: no consumer ever declared it (a typo, or a service
    not deployed yet). The broker returned the request at once, so the caller hears it at once."""

    def __init__(self, service: str, message: str) -> None:
        self.service = service
        super().__init__(message)


class BrokerUnavailable(BurrowError):
    """The producer is closed or cannot accept work."""


class Backpressure(BurrowError):
    """``submit(block=False)`` found the in-flight window full."""
