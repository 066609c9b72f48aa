"""aio-pika's RPC pattern (``aio_pika.patterns.JsonRPC``): ``python aiopika_peer.py server|client AMQP_URL``.

Channels have publisher confirms (aio-pika's default); the server's window is 32 unacked calls,
burrow's default, and its echo handler is a coroutine, so concurrency is the window. The pattern
declares its request queue non-durable and auto-deleted and publishes calls non-persistent: a
broker restart or a server that goes away loses queued calls (burrow's requests survive both).
JsonRPC is used rather than the default pickle ``RPC`` so that no side unpickles network input.
"""

from __future__ import annotations

import asyncio
import sys

import aio_pika
from aio_pika.patterns import JsonRPC

import peerloop

WINDOW = 32


async def echo(*, body: str) -> str:
    return "Consumer processed: " + body


async def open_rpc(url: str) -> JsonRPC:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=WINDOW)
    return await JsonRPC.create(channel)


def main(role: str, url: str) -> None:
    loop = asyncio.new_event_loop()
    rpc = loop.run_until_complete(open_rpc(url))
    if role == "server":
        loop.run_until_complete(rpc.register("bench_echo", echo, auto_delete=True))
        peerloop.ready_server()
        loop.run_forever()
        return

    async def call(body: str) -> str:
        return await rpc.proxy.bench_echo(body=body)

    peerloop.serve(peerloop.AsyncDriver(loop, call))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
