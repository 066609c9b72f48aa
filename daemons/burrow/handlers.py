"""Request handlers shipped with burrow, and the loader for ``consumer.handler``.

A handler is any ``module:function`` that takes the request body (and, when it declares a second
parameter, a :class:`RequestContext`) and returns the reply body as bytes; an ``async def`` one
returns it from a coroutine, which the consumer awaits on its event loop. The consumer loads and
checks it once at start-up, so a typo in the config fails the daemon's start, not its first request.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from burrow import tracing
from burrow.errors import HandlerLoadError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a handler may want to know about the request besides its body."""

    correlation_id: str
    message_id: str | None
    redelivered: bool
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str | None = None

    @property
    def trace_id(self) -> str | None:
        """The W3C trace id of the request's ``traceparent`` header (32 hex digits), or ``None``."""
        return tracing.trace_id(self.headers)


Handler = Callable[[bytes, RequestContext], bytes]


def echo(body: bytes) -> bytes:
    """Answer ``Consumer processed: <body>``: the seed's simulated processing."""
    return b"Consumer processed: " + body


def load_handler(spec: str) -> Handler:
    """Import ``module:function`` and return it wrapped to always take ``(body, context)``.

    Raises :class:`HandlerLoadError` with a one-line reason when the module does not import, the
    attribute is missing or not callable, or its signature takes neither one nor two arguments.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise HandlerLoadError(f"handler {spec!r} must look like 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise HandlerLoadError(f"handler {spec!r}: cannot import {module_name!r}: {exc}") from exc
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise HandlerLoadError(f"handler {spec!r}: {module_name!r} has no attribute {attr!r}") from None
    if not callable(target):
        raise HandlerLoadError(f"handler {spec!r} is not callable")
    try:
        positional = [
            p
            for p in inspect.signature(target).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):
        positional = []
    takes_context = len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in positional)
    if not positional:
        raise HandlerLoadError(f"handler {spec!r} must take the request body as its first argument")
    logger.debug("Loaded handler %s (context=%s)", spec, takes_context)
    if takes_context:
        return target
    if is_coroutine_handler(target):
        async def body_only(body: bytes, _context: RequestContext) -> bytes:
            return await target(body)

        return body_only
    return lambda body, _context: target(body)


def is_coroutine_handler(handler: Callable[..., Any]) -> bool:
    """True for an ``async def`` handler (or an object whose ``__call__`` is one): the consumer runs
    it on its event loop (:mod:`burrow.asyncworkers`) instead of in a worker thread."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(getattr(handler, "__call__", None))
