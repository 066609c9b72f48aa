"""nameko's RPC: ``python nameko_peer.py server|client AMQP_URL``.

nameko acks a request after its worker ran and the reply was published, publishes with confirms
and persistent messages by default; the service runs ``max_workers = 8`` (also its prefetch).
Clients are ``ClusterRpcProxy`` instances, one per (green) thread, since a proxy is not meant to
be shared; eventlet's monkey patching makes the client's threads green threads.
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import sys  # noqa: E402
import threading  # noqa: E402

from nameko.containers import ServiceContainer  # noqa: E402
from nameko.rpc import rpc  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

import peerloop  # noqa: E402


class BenchEcho:
    name = "bench_echo"

    @rpc
    def echo(self, body: str) -> str:
        return "Consumer processed: " + body


def main(role: str, url: str) -> None:
    config = {"AMQP_URI": url, "max_workers": 8}
    if role == "server":
        container = ServiceContainer(BenchEcho, config)
        container.start()
        peerloop.ready_server()
        container.wait()
        return
    local = threading.local()

    def call(body: str) -> str:
        proxy = getattr(local, "proxy", None)
        if proxy is None:
            proxy = local.proxy = ClusterRpcProxy(config, timeout=peerloop.REPLY_TIMEOUT).start()
        return proxy.bench_echo.echo(body)

    peerloop.serve(peerloop.ThreadedDriver(call))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
