"""Command-line entry points: ``burrow`` (check-config, call, send, status, demo), ``burrow-consumer``
and ``burrow-producer``.

Each ``main`` is thin: parse arguments, set up logging, load the config, call the run function.
Configuration errors print one line naming the file and key and exit 78 (``EX_CONFIG``), never a
traceback; usage errors exit 2 (:mod:`burrow.exitcodes`). The parsers are built by module-level
functions so that the man pages and the shell completion are generated from them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Sequence

from burrow.config import BurrowConfig, load_config
from burrow.errors import BurrowError, ConfigError, HandlerLoadError
from burrow.exitcodes import EX_CONFIG, EX_FAILED
from burrow.partitions import key_argument
from burrow.services import service_argument
from burrow.tools import file_argument

if TYPE_CHECKING:
    from burrow.producer import Producer

logger = logging.getLogger(__name__)

#: ``burrow call``'s default ``--timeout``: seconds to reach the broker, then for each reply. A
#: person at a terminal should hear about a dead broker in seconds, not after the daemons' 30 s
#: ``producer.request_timeout``; slower handlers need an explicit ``--timeout``.
CALL_TIMEOUT = 10.0


def log_to_stderr(level: str) -> None:
    """Plain lines on stderr at ``level``, for the commands that are not daemons (the daemons call
    :func:`burrow.daemon.journal.install_service_logging`, which replaces this handler)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pika").setLevel(max(logging.WARNING, logging.getLogger().level))


def _load(path: str) -> BurrowConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"burrow: {exc}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("burrow")
    except metadata.PackageNotFoundError:
        return "unknown"


def cmd_call(args: argparse.Namespace) -> int:
    """Send messages through the library and print each reply, or run a burst with a summary.

    The broker must be reachable and the AMQP session open within ``--timeout``; otherwise one
    line says what was tried and why it failed, and the exit status is 1.
    """
    from burrow.producer import Producer
    from burrow.tools.reach import Unreachable, connect

    config = _load(args.config)
    log_to_stderr(args.log_level or "WARNING")
    if args.log_level is None:
        logging.getLogger("pika").setLevel(logging.CRITICAL)
    instance_id = args.instance_id or f"{config.producer.resolved_instance_id()}-call-{os.getpid()}"
    producer = Producer(config, instance_id=instance_id, name="call")
    try:
        connect(producer, config.rabbitmq, args.timeout, show_logs=args.log_level is not None)
    except Unreachable as exc:
        # Nothing was submitted, and the process exits now: the producer is left to die with it
        # rather than closed, since closing a connection in mid-handshake trips an assertion in
        # pika's connection workflow (a traceback on the I/O thread, after the one line below).
        print(f"burrow call: {exc}", file=sys.stderr)
        return EX_FAILED
    try:
        return _call(producer, args)
    finally:
        producer.stop()


def _call(producer: Producer, args: argparse.Namespace) -> int:
    """Send ``args.message`` one by one, or a burst of ``args.count``, through a connected producer."""
    from burrow.tools.burst import run_burst

    if args.count is None:
        failed = 0
        for message in args.message:
            try:
                reply = producer.call(message.encode(), timeout=args.timeout, service=args.service, key=args.key)
                print(reply.decode("utf-8", "replace"))
            except BurrowError as exc:
                failed += 1
                print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EX_FAILED if failed else 0
    bodies = [m.encode() for m in args.message] or [b"hello"]
    result = run_burst(
        lambda body: producer.call(body, timeout=args.timeout, service=args.service, key=args.key),
        bodies,
        count=args.count,
        concurrency=args.concurrency,
        show_progress=not args.quiet,
    )
    print(result.line())
    return EX_FAILED if result.failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from burrow.tools.demo import run

    return run(args.count, args.concurrency)


def cmd_dead(args: argparse.Namespace) -> int:
    """``burrow dead list|show|replay|purge``: the dead-letter queue, for operators."""
    from burrow.tools import dead

    config = _load(args.config)
    log_to_stderr(args.log_level or "WARNING")
    return dead.run(config, args)


def build_parser() -> argparse.ArgumentParser:
    """The ``burrow`` command's parser (also read by the man page and completion generators)."""
    from burrow.tools import checkconfig, dead, sendclient, status

    parser = argparse.ArgumentParser(prog="burrow", description="Request/response over RabbitMQ.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, title="commands")

    check = sub.add_parser("check-config", help="check a configuration file as installed (the secret is not needed)")
    checkconfig.add_arguments(check)
    check.set_defaults(func=checkconfig.run)

    call = sub.add_parser("call", help="send requests through the library and print the replies")
    file_argument(call.add_argument("--config", required=True, help="TOML configuration file (the producer's)"))
    call.add_argument("message", nargs="*", help="request bodies (default for a burst: 'hello')")
    call.add_argument("--service", type=service_argument, metavar="NAME",
                      help="send to this named service (default: the default service)")
    call.add_argument("--key", type=key_argument, help="keep these requests on one partition of a split service")
    call.add_argument("--count", type=int, help="send this many requests as a burst and print a summary")
    call.add_argument("--concurrency", type=int, default=16, help="requests in flight during a burst")
    call.add_argument("--timeout", type=_positive_seconds, default=CALL_TIMEOUT,
                      help=f"seconds to reach the broker, then for each reply (default {CALL_TIMEOUT:g})")
    call.add_argument("--instance-id", help="reply queue suffix (default: <host>-call-<pid>)")
    call.add_argument("--quiet", action="store_true", help="no progress bar")
    call.add_argument("--log-level", help="default WARNING, with the broker connection's own messages held back")
    call.set_defaults(func=cmd_call)

    demo = sub.add_parser("demo", help="start a throwaway broker and a consumer, send a burst, show the replies")
    demo.add_argument("--count", type=int, default=2000, help="requests in the burst (default 2000)")
    demo.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    demo.set_defaults(func=cmd_demo)

    dead_letters = sub.add_parser("dead", help="list, show, replay or purge the dead-letter queue")
    dead.add_arguments(dead_letters)
    dead_letters.set_defaults(func=cmd_dead)

    send = sub.add_parser("send", help="send requests to the local burrow-producer's Unix socket")
    sendclient.add_arguments(send)
    send.set_defaults(func=sendclient.run)

    state = sub.add_parser("status", help="is each local daemon running and connected to the broker? (exit 0/1/3/4)")
    status.add_arguments(state)
    state.set_defaults(func=status.run)
    return parser


def _positive_seconds(text: str) -> float:
    """argparse type: a number of seconds greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "call" and args.count is None and not args.message:
        parser.error("burrow call: give at least one MESSAGE, or --count N")
    return args.func(args)


#: What each daemon does, for its --help and man page.
DAEMON_DESCRIPTIONS = {
    "consumer": "Run the burrow consumer daemon: take requests from the broker, run the handler on each, "
                "publish the replies.",
    "producer": "Run the burrow producer daemon: serve the HTTP API on a Unix socket and pass its requests "
                "through the broker to the consumers.",
}


def _daemon_parser(role: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"burrow-{role}", description=DAEMON_DESCRIPTIONS[role])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    file_argument(parser.add_argument("--config", required=True, help="TOML configuration file"))
    parser.add_argument("--daemon", action="store_true", help="detach from the terminal (hosts without systemd)")
    file_argument(parser.add_argument("--pidfile", help="with --daemon: write and lock this pid file"))
    return parser


def consumer_parser() -> argparse.ArgumentParser:
    """``burrow-consumer``'s parser (also read by the man page and completion generators)."""
    return _daemon_parser("consumer")


def producer_parser() -> argparse.ArgumentParser:
    """``burrow-producer``'s parser (also read by the man page and completion generators)."""
    return _daemon_parser("producer")


def _run_daemon(role: str, argv: Sequence[str] | None) -> int:
    args = _daemon_parser(role).parse_args(argv)
    config = _load(args.config)
    log_to_stderr(config.logging.level)
    from burrow.daemon.daemonize import PidFileLocked
    from burrow.handlers import load_handler
    from burrow.daemon.service import run_daemon
    from burrow.services import handler_key, served

    if role == "consumer":
        for name, service in served(config.consumer):  # fail on the terminal, before any --daemon fork
            try:
                load_handler(service.handler)
            except HandlerLoadError as exc:
                logger.error("%s: %s: %s", config.path, handler_key(config.consumer, name), exc)
                return EX_CONFIG
    try:
        return run_daemon(role, config, detach=args.daemon, pidfile=args.pidfile)
    except HandlerLoadError as exc:
        logger.error("%s: consumer.handler: %s", config.path, exc)
        return EX_CONFIG
    except PidFileLocked as exc:
        logger.error("%s", exc)
        return 1


def consumer_main(argv: Sequence[str] | None = None) -> int:
    """``burrow-consumer --config PATH [--daemon [--pidfile PATH]]``: run until SIGTERM/SIGINT."""
    return _run_daemon("consumer", argv)


def producer_main(argv: Sequence[str] | None = None) -> int:
    """``burrow-producer --config PATH [--daemon [--pidfile PATH]]``: run until SIGTERM/SIGINT."""
    return _run_daemon("producer", argv)


if __name__ == "__main__":
    sys.exit(main())
