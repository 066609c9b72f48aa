"""burrow.tracing: W3C traceparent parsing, new hops and traces, the active trace in log records.

Each test runs twice: with opentelemetry-api's propagator (a test dependency) behind ``extract`` and
without it, as in a daemon without the API; ``parse`` is the module's own parser either way.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Iterator

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from burrow import tracing
from burrow.daemon.journal import StderrFormatter
from burrow.handlers import RequestContext

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
FORMAT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


@pytest.fixture(params=["opentelemetry", "builtin"], autouse=True)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "builtin":
        monkeypatch.setattr(tracing, "TraceContextTextMapPropagator", None)
    else:
        assert tracing.TraceContextTextMapPropagator is not None, "opentelemetry-api is a test dependency"
    yield request.param


@pytest.mark.parametrize("read", [tracing.parse, tracing.extract])
def test_valid_traceparent_is_parsed(read) -> None:
    assert read(VALID) == (TRACE, "00f067aa0ba902b7", "01")
    assert read(VALID.encode()) == (TRACE, "00f067aa0ba902b7", "01")


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        "",
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 has no more fields
    ],
)
@pytest.mark.parametrize("read", [tracing.parse, tracing.extract])
def test_invalid_traceparents_are_refused(read, value: object) -> None:
    assert read(value) is None


def test_child_keeps_the_trace_and_flags_with_a_new_parent() -> None:
    hop = tracing.child(VALID)
    assert FORMAT.fullmatch(hop)
    trace, parent, flags = tracing.parse(hop)  # type: ignore[misc]
    assert (trace, flags) == (TRACE, "01") and parent != "00f067aa0ba902b7"


def test_child_of_nothing_or_garbage_starts_a_new_sampled_trace() -> None:
    traces = {tracing.parse(tracing.child(value))[0] for value in (None, "garbage", None)}  # type: ignore[index]
    assert len(traces) == 3 and TRACE not in traces
    assert tracing.child().endswith("-01")


def test_with_traceparent_keeps_a_valid_one_and_replaces_a_bad_one() -> None:
    assert tracing.with_traceparent({"traceparent": VALID, "x": 1}) == {"traceparent": VALID, "x": 1}
    replaced = tracing.with_traceparent({"traceparent": "garbage"})["traceparent"]
    assert FORMAT.fullmatch(replaced)
    assert FORMAT.fullmatch(tracing.with_traceparent(None)["traceparent"])


@pytest.mark.parametrize(
    "value",
    [
        VALID,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later-field",
        "00-4bF92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ],
)
def test_extract_agrees_with_the_propagator(value: str) -> None:
    """``extract`` reads burrow's own form with the module's parser, with or without the API
    installed: it must answer what opentelemetry's propagator answers."""
    context = TraceContextTextMapPropagator().extract({"traceparent": value})
    span = otel_trace.get_current_span(context).get_span_context()
    expected = (f"{span.trace_id:032x}", f"{span.span_id:016x}", f"{int(span.trace_flags):02x}") if span.is_valid else None
    assert tracing.extract(value) == expected


def test_burrows_own_traceparent_is_not_read_again_by_the_propagator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The producer checks every request's traceparent, the HTTP API's own included; for a value in
    burrow's form the propagator (ten times slower than the parser) is not asked, for others it is."""
    calls = []

    class Counting(TraceContextTextMapPropagator):  # type: ignore[misc]
        def extract(self, carrier, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(carrier)
            return super().extract(carrier, *args, **kwargs)

    monkeypatch.setattr(tracing, "TraceContextTextMapPropagator", Counting)
    own = tracing.child(VALID)
    assert tracing.with_traceparent({"traceparent": own})["traceparent"] == own
    assert calls == []
    assert tracing.extract(" " + VALID) == (TRACE, "00f067aa0ba902b7", "01")
    assert calls == [{"traceparent": " " + VALID}]


def test_propagate_copies_the_requests_traceparent_onto_the_reply() -> None:
    assert tracing.propagate({"traceparent": VALID}, {"x-burrow-status": "ok"}) == {
        "x-burrow-status": "ok", "traceparent": VALID,
    }
    assert tracing.propagate({}, None) == {}


def test_request_context_exposes_the_trace_id() -> None:
    context = RequestContext("c", "m", False, headers={"traceparent": VALID})
    assert context.trace_id == TRACE
    assert RequestContext("c", "m", False).trace_id is None


def test_log_records_carry_the_active_trace_of_their_thread() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(StderrFormatter())
    log = logging.getLogger("test_tracing.active")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with tracing.active(TRACE):
            log.info("inside")
            other = threading.Thread(target=log.info, args=("other thread",))
            other.start()
            other.join()
        log.info("outside")
        log.info("explicit", extra={"TRACE_ID": "f" * 32})
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith(f"inside [TRACE_ID={TRACE}]")
    assert lines[1].endswith("other thread") and lines[2].endswith("outside")
    assert lines[3].endswith(f"explicit [TRACE_ID={'f' * 32}]")
