"""The asyncio example of ``daemons/burrow/examples/`` end to end, on a real broker.

The Starlette app (``asyncio_web.py``) runs through its ASGI test client, which runs its lifespan
(the awaitable producer connects first); the consumer serves ``quotes`` with the ``async def``
handler of ``async_http_handler.py``, which calls a price service: a local HTTP server this test
starts on a loopback port.
"""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path
from typing import Iterator

import pytest
from starlette.testclient import TestClient

EXAMPLES = Path(__file__).resolve().parents[2] / "daemons" / "burrow" / "examples"
PRICES = {"widget": 9.5, "gadget": 120.0}


class PriceService(http.server.ThreadingHTTPServer):
    """``GET /price/<name>``: ``{"price": ...}`` or 404; remembers each path and traceparent."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        super().__init__(("127.0.0.1", 0), PriceHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class PriceHandler(http.server.BaseHTTPRequestHandler):
    server: PriceService

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.seen.append((self.path, self.headers.get("traceparent")))
        price = PRICES.get(self.path.removeprefix("/price/"))
        body = json.dumps({"price": price} if price is not None else {"error": "no such product"}).encode()
        self.send_response(200 if price is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test asserts on ``seen``."""


@pytest.fixture
def price_service() -> Iterator[PriceService]:
    server = PriceService()
    thread = threading.Thread(target=server.serve_forever, name="price-service", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_starlette_app_calls_an_async_handler_that_calls_an_http_service(make_config, start_consumer, price_service,
                                                                         monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("PRICE_SERVICE_URL", price_service.url)
    import asyncio_web

    config = make_config(services={"quotes": "async_http_handler:quote"}, consumer={"concurrency": 50})
    start_consumer(config)
    with TestClient(asyncio_web.create_app(config)) as client:
        answers = {name: client.get(f"/quote/{name}") for name in ("widget", "gadget", "nothing")}
    assert (answers["widget"].status_code, answers["widget"].json()) == (200, {"quote": "widget: 9.5"})
    assert (answers["gadget"].status_code, answers["gadget"].json()) == (200, {"quote": "gadget: 120.0"})
    assert answers["nothing"].status_code == 502, answers["nothing"].text
    assert answers["nothing"].json()["error"].startswith("HTTPStatusError: Client error '404 Not Found'")
    assert [path for path, _ in price_service.seen] == ["/price/widget", "/price/gadget", "/price/nothing"]
    assert all(traceparent for _, traceparent in price_service.seen), "the request's trace did not reach the service"
