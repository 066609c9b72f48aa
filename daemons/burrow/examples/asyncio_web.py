"""A Starlette app whose endpoint calls a burrow service with the awaitable producer.

``GET /quote/<name>`` sends ``<name>`` to the ``quotes`` service (see ``async_http_handler.py``) and
answers its reply as JSON; a handler error is a 502, a deadline passed a 504. One
:class:`burrow.aio.Producer` serves every request: the app's lifespan starts it (connected before
the first request) and stops it (in-flight calls answered first). Run it with any ASGI server::

    BURROW_CONFIG=/etc/burrow/producer.toml uvicorn --factory asyncio_web:app_from_env
"""

from __future__ import annotations

import contextlib
import os
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from burrow import BurrowConfig, RemoteError, RequestTimeout, aio, load_config


def create_app(config: BurrowConfig) -> Starlette:
    """The app, with its producer on ``config``."""
    producer = aio.Producer(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with producer:
            yield

    async def quote(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        try:
            reply = await producer.call(name.encode(), service="quotes", timeout=5)
        except RemoteError as exc:
            return JSONResponse({"error": f"{exc.type_name}: {exc.message}"}, status_code=502)
        except RequestTimeout:
            return JSONResponse({"error": "the quotes service did not answer in time"}, status_code=504)
        return JSONResponse({"quote": reply.decode()})

    return Starlette(routes=[Route("/quote/{name}", quote)], lifespan=lifespan)


def app_from_env() -> Starlette:
    """The app on the config file ``$BURROW_CONFIG`` names (for ``uvicorn --factory``)."""
    return create_app(load_config(os.environ["BURROW_CONFIG"]))
