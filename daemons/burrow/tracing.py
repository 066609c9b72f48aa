"""W3C trace context (``traceparent``) carried with every request, so one id follows it everywhere.

The producer puts a ``traceparent`` header on each request: the caller's, when it passes a valid
one in ``headers=`` (the HTTP API passes on its client's), otherwise a new trace. The consumer hands
it to the handler (``RequestContext.headers``, ``RequestContext.trace_id``), copies it onto the reply,
and runs the handler with :func:`active` set, so every log line of the request's way, the handler's
own included, carries the journald field ``TRACE_ID`` (``journalctl TRACE_ID=<32 hex digits>``).

No tracing SDK is needed. When ``opentelemetry-api`` is installed its W3C propagator reads the
headers that come from outside (the HTTP client's, a library caller's); otherwise the small parser
here does, to the same rules, as it does for the headers burrow wrote itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import re
from collections.abc import Iterator, Mapping
from typing import Any

try:
    from opentelemetry import trace as _otel_trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the API is optional: the parser below implements the same format
    _otel_trace = None
    TraceContextTextMapPropagator = None

#: The header's name, in HTTP and in the AMQP message headers alike.
HEADER = "traceparent"

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
#: The form burrow writes (version 00, nothing around it). For such a value :func:`parse` and
#: opentelemetry's propagator give the same answer, so :func:`extract` reads it with the former:
#: the producer validates every request's traceparent, the HTTP API's own included.
_CANONICAL = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z")
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("burrow_trace_id", default=None)


def parse(value: object) -> tuple[str, str, str] | None:
    """``(trace id, parent id, flags)`` of a valid ``traceparent`` value, else ``None``.

    Follows the W3C rules: version ``ff`` and all-zero ids are invalid; a future version may append
    fields, version ``00`` may not. Used on headers burrow wrote itself (the consumer's hot path);
    headers from outside go through :func:`extract`.
    """
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id, parent_id, flags


def extract(value: object) -> tuple[str, str, str] | None:
    """Like :func:`parse`, for a header from a client: through opentelemetry-api's W3C propagator
    when it is installed (it is about ten times slower, so only the producer's edge uses it, and
    only for a value not in burrow's own form, where both agree)."""
    if TraceContextTextMapPropagator is None:
        return parse(value)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    if _CANONICAL.match(value):
        return parse(value)
    context = TraceContextTextMapPropagator().extract({HEADER: value})
    span_context = _otel_trace.get_current_span(context).get_span_context()
    if not span_context.is_valid:
        return None
    return (
        _otel_trace.format_trace_id(span_context.trace_id),
        _otel_trace.format_span_id(span_context.span_id),
        f"{int(span_context.trace_flags):02x}",
    )


def child(value: object = None) -> str:
    """A ``traceparent`` for a new hop: the trace of ``value`` when valid (else a new trace), a new parent id.

    New traces are sampled (flags ``01``): nothing here records spans, the flag only tells any
    tracing backend downstream that this trace is worth keeping.
    """
    parsed = extract(value)
    trace_id, flags = (parsed[0], parsed[2]) if parsed else (_random_id(128), "01")
    return f"00-{trace_id}-{_random_id(64)}-{flags}"


def _random_id(bits: int) -> str:
    """A random non-zero id of ``bits`` bits in lower-case hex. Ids need to be unique, not secret
    (opentelemetry's SDK makes its ids the same way): no system call per id."""
    while True:
        value = random.getrandbits(bits)
        if value:
            return f"{value:0{bits // 4}x}"


def with_traceparent(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """``headers`` with a valid ``traceparent``: the caller's own, or a new trace's."""
    result = dict(headers or {})
    if extract(result.get(HEADER)) is None:
        result[HEADER] = child()
    return result


def trace_id(headers: Mapping[str, Any] | None) -> str | None:
    """The 32-hex-digit trace id of the ``traceparent`` in ``headers``, or ``None``."""
    parsed = parse((headers or {}).get(HEADER))
    return parsed[0] if parsed else None


def propagate(source: Mapping[str, Any] | None, target: Mapping[str, Any] | None) -> dict[str, Any]:
    """``target`` plus the ``traceparent`` of ``source``, if it has one (a reply carries its request's)."""
    result = dict(target or {})
    value = (source or {}).get(HEADER)
    if value is not None:
        result[HEADER] = value
    return result


def current() -> str | None:
    """The trace id of the request this thread or task works on (see :func:`active`), or ``None``."""
    return _current.get()


@contextlib.contextmanager
def active(trace: str | None) -> Iterator[None]:
    """Work on trace ``trace`` in this thread or asyncio task: log records pick it up as ``TRACE_ID``."""
    token = _current.set(trace)
    try:
        yield
    finally:
        _current.reset(token)


__all__ = ["HEADER", "active", "child", "current", "extract", "parse", "propagate", "trace_id", "with_traceparent"]
