"""Choose the producer daemon's HTTP stack: two asyncio servers measured on this machine (issue 12).

Both candidates serve the same minimal ``POST /v1/requests`` from a Unix socket in their own
process, in front of the same stand-in producer: ``submit`` returns a ``concurrent.futures.Future``
that a separate thread (standing in for the AMQP I/O thread) resolves in batches, and the answer
comes back into the loop through :class:`burrow.daemon.bridge.FutureBridge`. No broker is involved,
so what differs between the rows is the HTTP stack alone:

- ``aiohttp``: aiohttp's low-level server (``aiohttp.web.Server``, no router, no middlewares);
- ``uvicorn``: uvicorn's httptools protocol on uvloop serving a bare ASGI callable;
- ``burrow``: not a candidate but the outcome, :class:`burrow.daemon.http.HttpApi` (uvicorn plus
  the API's checks, headers, connection cap and deadlines) in front of the same stand-in.

The load comes from :func:`burrow.tools.socketburst.run_socket_burst` (asyncio, uvloop, httptools)
in this process. Measured: throughput over 64 keep-alive connections, the server's CPU per request
(``/proc/<pid>/stat``), the client's, and p50/p99 of an open loop at a fixed rate (latency from
the scheduled send time)::

    python -m benchmarks.http_candidates [--count 20000] [--rate 1000] [--rounds 2] [--out RAW_JSON]

Each row is printed as it is measured; all of them go to ``raw.json`` (default
``benchmarks/results/<UTC time>-http-stacks/``) behind its provenance block (benchmarks/rawfile.py).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import datetime
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from burrow.tools.burst import percentile
import uvloop

from burrow.tools.socketburst import run_socket_burst

from benchmarks.httpbench import open_loop
from benchmarks.rawfile import RawFile

CANDIDATES = ("aiohttp", "uvicorn", "burrow")


class BatchResolver:
    """Stand-in producer: futures resolved by one thread in batches, like the AMQP I/O thread."""

    def __init__(self) -> None:
        self._pending: collections.deque[tuple[concurrent.futures.Future[bytes], bytes]] = collections.deque()
        self._wake = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    connected = True
    in_flight = 0

    def submit(self, body: bytes, **_options: object) -> concurrent.futures.Future[bytes]:
        future: concurrent.futures.Future[bytes] = concurrent.futures.Future()
        self._pending.append((future, body))
        self._wake.set()
        return future

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._pending:
                future, body = self._pending.popleft()
                future.set_result(b"Consumer processed: " + body)


def serve_aiohttp(path: str) -> None:
    from aiohttp import web

    from burrow.daemon.bridge import FutureBridge

    producer = BatchResolver()

    async def main() -> None:
        bridge = FutureBridge(asyncio.get_running_loop())

        async def handler(request: web.BaseRequest) -> web.Response:
            body = await request.read()
            reply = await bridge.wrap(producer.submit(body))
            return web.Response(body=reply, content_type="application/octet-stream")

        server = web.Server(handler, access_log=None)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(1024)
        await asyncio.get_running_loop().create_server(server, sock=sock)
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.new_event_loop().run_until_complete(main())


def serve_uvicorn(path: str) -> None:
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from burrow.daemon.bridge import FutureBridge

    producer = BatchResolver()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        bridge = FutureBridge(loop)

        async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            reply = await bridge.wrap(producer.submit(b"".join(chunks)))
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/octet-stream"), (b"content-length", str(len(reply)).encode())]})
            await send({"type": "http.response.body", "body": reply})

        config = uvicorn.Config(app, http="httptools", loop="none", lifespan="off", access_log=False,
                                server_header=False, date_header=False)
        config.load()
        state = ServerState()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(1024)
        await loop.create_server(lambda: HttpToolsProtocol(config, state, {}, loop), sock=sock)
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.new_event_loop().run_until_complete(main())


def serve_burrow(path: str) -> None:
    import signal

    from burrow.daemon.http import HttpApi

    api = HttpApi(BatchResolver(), socket_path=path, socket_activation=False)
    api.start()
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM})


SERVERS = {"aiohttp": serve_aiohttp, "uvicorn": serve_uvicorn, "burrow": serve_burrow}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(candidate: str, count: int, rate: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "api.sock")
        server = subprocess.Popen([sys.executable, "-m", "benchmarks.http_candidates", "--serve", candidate, path],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            run_socket_burst(path, [b"x" * 100], count=2000, concurrency=64, show_progress=False)  # warm-up
            server_before, client_before = cpu_seconds(server.pid), own_cpu()
            burst = run_socket_burst(path, [b"x" * 100], count=count, concurrency=64, show_progress=False)
            server_cpu, client_cpu = cpu_seconds(server.pid) - server_before, own_cpu() - client_before
            assert burst.failed == 0, burst.line()
            latencies = sorted(open_loop(path, int(rate * 10), rate, 10.0)["latencies"])
        finally:
            server.kill()
            server.wait()
    return {
        "req_per_s_64": round(burst.rate),
        "server_cpu_ms_per_request": round(server_cpu / burst.sent * 1000, 4),
        "client_cpu_ms_per_request": round(client_cpu / burst.sent * 1000, 4),
        "p50_ms_at_rate": round(percentile(latencies, 0.5) * 1000, 2),
        "p99_ms_at_rate": round(percentile(latencies, 0.99) * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", nargs=2, metavar=("CANDIDATE", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, help="raw file (default benchmarks/results/<UTC time>-http-stacks/raw.json)")
    args = parser.parse_args()
    if args.serve:
        candidate, path = args.serve
        SERVERS[candidate](path)
        return 0
    raw_file = RawFile("benchmarks.http_candidates")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path(__file__).resolve().parent / "results" / f"{stamp}-http-stacks" / "raw.json"
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in CANDIDATES}
    for round_number in range(args.rounds):
        for name in CANDIDATES:  # interleaved, so both see the same neighbours
            rows[name].append(measure(name, args.count, args.rate))
            print(json.dumps({"round": round_number + 1, "candidate": name, **rows[name][-1]}), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    raw_file.write(out, {"settings": {"count": args.count, "rate": args.rate, "rounds": args.rounds}, "rows": rows},
                   indent=1)
    print(f"load average: {os.getloadavg()}; raw file: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
