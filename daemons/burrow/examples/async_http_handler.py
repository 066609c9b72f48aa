"""An ``async def`` burrow handler that calls an HTTP service: the I/O-bound kind asyncio is for.

Served by a consumer as ``async_http_handler:quote`` (with this folder on ``PYTHONPATH``), e.g.::

    [consumer.services.quotes]
    handler = "async_http_handler:quote"
    concurrency = 200          # requests awaited at once, on the daemon's one event loop

The request body is a product name; the handler asks the price service at
``$PRICE_SERVICE_URL/price/<name>`` and answers ``<name>: <price>``. While it waits for the HTTP
answer, the loop runs the other requests' handlers, so 200 slow calls cost one thread, not 200. An
HTTP error becomes the caller's ``RemoteError``; a call still running at the request's deadline is
cancelled and the request dead-lettered as stale.
"""

from __future__ import annotations

import asyncio
import os
import weakref

import httpx2

from burrow import RequestContext

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx2.AsyncClient] = weakref.WeakKeyDictionary()


def client() -> httpx2.AsyncClient:
    """One connection pool for every request on the consumer's event loop, made on first use
    (an HTTP client belongs to the loop it was made on)."""
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = httpx2.AsyncClient(base_url=os.environ["PRICE_SERVICE_URL"], timeout=10.0)
    return _clients[loop]


async def quote(body: bytes, context: RequestContext) -> bytes:
    """Look the product up and answer ``<name>: <price>``; the request's trace goes along."""
    name = body.decode()
    headers = {"traceparent": context.headers["traceparent"]} if "traceparent" in context.headers else {}
    response = await client().get(f"/price/{name}", headers=headers)
    response.raise_for_status()
    return f"{name}: {response.json()['price']}".encode()
