"""Celery with the ``rpc://`` result backend: ``python celery_peer.py server|client AMQP_URL``.

Configured as Celery's documentation recommends for not losing tasks: late acks (after the task
ran), ``task_reject_on_worker_lost``, publisher confirms on the broker connection, persistent task
and result messages; the worker runs 8 threads (``-P threads -c 8``) with the default prefetch
multiplier of 4: a window of 32 (burrow's default is 64, 8 per worker). The ``rpc://`` backend's result
consumer is not thread-safe, so each client thread has its own app (connection and reply queue).
"""

from __future__ import annotations

import sys
import threading

from celery import Celery
from celery.signals import worker_ready

import peerloop

QUEUE = "bench.celery"


def make_app(url: str) -> Celery:
    app = Celery("bench", broker=url, backend="rpc://")
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=4,
        broker_transport_options={"confirm_publish": True},
        result_persistent=True,
        task_default_queue=QUEUE,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_connection_retry_on_startup=True,
    )

    @app.task(name="echo")
    def echo(body: str) -> str:
        return "Consumer processed: " + body

    return app


def main(role: str, url: str) -> None:
    if role == "server":
        app = make_app(url)
        worker_ready.connect(lambda **_kwargs: peerloop.ready_server(), weak=False)
        app.worker_main(["worker", "-P", "threads", "-c", "8", "--loglevel=WARNING", "--without-gossip",
                         "--without-mingle", "--without-heartbeat", "-Q", QUEUE])
        return
    local = threading.local()

    def call(body: str) -> str:
        app = getattr(local, "app", None)
        if app is None:
            app = local.app = make_app(url)
        return app.send_task("echo", args=[body], queue=QUEUE).get(timeout=peerloop.REPLY_TIMEOUT)

    peerloop.serve(peerloop.ThreadedDriver(call))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
