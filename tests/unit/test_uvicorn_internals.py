"""The private parts of uvicorn that ``burrow.daemon.http.protocol`` subclasses, checked one by one.

The protocol module's docstring lists what it relies on; each check here names the attribute an
installed uvicorn lacks, so an upgrade that moves one fails here, by name, instead of as an
``AttributeError`` on a client's connection.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

IMPL = "uvicorn.protocols.http.httptools_impl"
METHODS = (
    "connection_made",
    "connection_lost",
    "data_received",
    "on_message_begin",
    "on_headers_complete",
    "on_message_complete",
    "on_response_complete",
    "timeout_keep_alive_handler",
    "_unset_keepalive_if_required",
)
#: Set by the constructor (and ``connection_made``), before any request.
CONNECTION_ATTRIBUTES = (
    "loop", "transport", "connections", "tasks", "parser", "cycle", "pipeline", "timeout_keep_alive",
    "timeout_keep_alive_task",
)
#: Set once a request's head has arrived.
REQUEST_ATTRIBUTES = ("scope", "url", "headers")
CYCLE_ATTRIBUTES = ("response_complete", "more_body")


def require(owner: Any, name: str, where: str) -> Any:
    assert hasattr(owner, name), f"uvicorn {uvicorn.__version__}: {where} has no {name!r} (burrow.daemon.http.protocol uses it)"
    return getattr(owner, name)


class RecordingTransport(asyncio.Transport):
    """Just enough of a transport for uvicorn to serve one request into a list."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_the_module_and_its_names_exist() -> None:
    module = importlib.import_module(IMPL)
    require(module, "HttpToolsProtocol", IMPL)
    status_line = require(module, "STATUS_LINE", IMPL)
    assert status_line[431].startswith(b"HTTP/1.1 431 "), f"uvicorn {uvicorn.__version__}: {IMPL}.STATUS_LINE changed"
    state = require(importlib.import_module("uvicorn.server"), "ServerState", "uvicorn.server")()
    assert isinstance(require(state, "connections", "ServerState()"), set)
    assert isinstance(require(state, "tasks", "ServerState()"), set)


def test_the_protocol_methods_exist() -> None:
    protocol = importlib.import_module(IMPL).HttpToolsProtocol
    for name in METHODS:
        assert callable(require(protocol, name, "HttpToolsProtocol"))


def test_the_constructor_takes_config_state_app_state_and_loop() -> None:
    protocol = importlib.import_module(IMPL).HttpToolsProtocol
    parameters = list(inspect.signature(protocol.__init__).parameters)[1:]
    assert parameters[:4] == ["config", "server_state", "app_state", "_loop"], (
        f"uvicorn {uvicorn.__version__}: HttpToolsProtocol({', '.join(parameters)})"
    )


def test_a_served_request_has_the_attributes_the_subclass_reads(loop: asyncio.AbstractEventLoop) -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(app, http="httptools", ws="none", loop="none", lifespan="off", log_config=None)
    config.load()
    protocol = HttpToolsProtocol(config, ServerState(), {}, loop)
    for name in CONNECTION_ATTRIBUTES:
        require(protocol, name, "HttpToolsProtocol(...)")
    transport = RecordingTransport()
    protocol.connection_made(transport)
    assert protocol.transport is transport, f"uvicorn {uvicorn.__version__}: connection_made does not keep the transport"
    assert protocol in protocol.connections, f"uvicorn {uvicorn.__version__}: connections does not hold the protocol"
    protocol.data_received(b"GET /v1/health HTTP/1.1\r\nHost: burrow\r\n\r\n")
    for name in REQUEST_ATTRIBUTES:
        require(protocol, name, "HttpToolsProtocol after a request head")
    assert protocol.url == b"/v1/health" and (b"host", b"burrow") in protocol.headers
    for name in CYCLE_ATTRIBUTES:
        require(protocol.cycle, name, "HttpToolsProtocol.cycle")
    loop.run_until_complete(asyncio.gather(*protocol.tasks))
    assert protocol.cycle.response_complete and not protocol.cycle.more_body
    assert b"".join(transport.written).startswith(b"HTTP/1.1 204 ")
    assert protocol.timeout_keep_alive_task is not None, "on_response_complete no longer arms the keep-alive timer"
    protocol.timeout_keep_alive_task.cancel()


#: What ``burrow.daemon.http.protocol.write_whole`` reads and sets on a request's cycle.
WHOLE_ANSWER_ATTRIBUTES = (
    "scope", "transport", "flow", "disconnected", "keep_alive", "response_started", "waiting_for_100_continue",
    "response_complete", "message_event", "on_response",
)


def serve_one(loop: asyncio.AbstractEventLoop, head: bytes, answer: Any) -> tuple[bytes, Any, RecordingTransport, list[str]]:
    """One request through uvicorn's own protocol; ``answer(cycle, send)`` runs as its application."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    events: list[str] = []
    protocol: Any = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        cycle = protocol.cycle
        for name in WHOLE_ANSWER_ATTRIBUTES:
            require(cycle, name, "HttpToolsProtocol.cycle")
        on_response = cycle.on_response
        cycle.on_response = lambda: (events.append("response complete"), on_response())
        await answer(cycle, send)

    config = uvicorn.Config(app, http="httptools", ws="none", loop="none", lifespan="off", log_config=None)
    config.load()
    protocol = HttpToolsProtocol(config, ServerState(), {}, loop)
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(head)
    cycle = protocol.cycle
    loop.run_until_complete(asyncio.gather(*protocol.tasks))
    if protocol.timeout_keep_alive_task is not None:
        protocol.timeout_keep_alive_task.cancel()
    return b"".join(transport.written), cycle, transport, events


@pytest.mark.parametrize("close", [False, True])
@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
def test_write_whole_writes_and_finishes_as_send_does(loop: asyncio.AbstractEventLoop, close: bool, version: bytes) -> None:
    """The protocol's one-write answer leaves the same bytes and the same cycle state as
    uvicorn's two ``send`` messages, with and without keep-alive."""
    from burrow.daemon.http.protocol import write_whole

    head = b"POST /v1/requests HTTP/" + version + b"\r\nHost: burrow\r\nContent-Length: 0\r\n\r\n"
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", b"5"), (b"x-burrow-request-id", b"r1")]
    if close:
        headers.append((b"connection", b"close"))

    async def by_send(cycle: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"hello"})

    async def by_write_whole(cycle: Any, send: Any) -> None:
        assert write_whole(cycle, 200, list(headers), b"hello")

    served = [serve_one(loop, head, answer) for answer in (by_send, by_write_whole)]
    (sent, sent_cycle, sent_transport, sent_events), (whole, whole_cycle, whole_transport, whole_events) = served
    assert whole == sent and sent.startswith(b"HTTP/1.1 200 OK\r\n")
    assert sent_events == whole_events == ["response complete"]
    for name in ("keep_alive", "response_started", "response_complete"):
        assert getattr(whole_cycle, name) == getattr(sent_cycle, name), name
    assert whole_cycle.message_event.is_set() and sent_cycle.message_event.is_set()
    assert whole_transport.closing == sent_transport.closing == (close or version == b"1.0")


def test_write_whole_leaves_head_requests_to_send(loop: asyncio.AbstractEventLoop) -> None:
    from burrow.daemon.http.protocol import write_whole

    async def answer(cycle: Any, send: Any) -> None:
        assert not write_whole(cycle, 405, [(b"content-length", b"0")], b"")
        await send({"type": "http.response.start", "status": 405, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    written, cycle, _transport, _events = serve_one(loop, b"HEAD /v1/requests HTTP/1.1\r\nHost: burrow\r\n\r\n", answer)
    assert written.startswith(b"HTTP/1.1 405 ") and cycle.response_complete
