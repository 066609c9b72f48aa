"""Command-line entry points: ``burrow`` (check-config, call, send, demo), ``burrow-consumer``
and ``burrow-producer``.

Each ``main`` is thin: parse arguments, set up logging, load the config, call the run function.
Configuration errors print one line naming the file and key and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from burrow.config import BurrowConfig, load_config
from burrow.errors import BurrowError, ConfigError, HandlerLoadError

logger = logging.getLogger(__name__)

EXIT_CONFIG = 2


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
        raise SystemExit(EXIT_CONFIG) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file (and its handler); print one line and exit 0 or 2."""
    config = _load(args.path)
    from burrow.handlers import load_handler

    if args.role in ("consumer", "any"):
        try:
            load_handler(config.consumer.handler)
        except HandlerLoadError as exc:
            print(f"burrow: {args.path}: consumer.handler: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    print(f"{args.path}: OK")
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    """Send messages through the library and print each reply, or run a burst with a summary."""
    from burrow.tools.burst import run_burst
    from burrow.producer import Producer

    config = _load(args.config)
    log_to_stderr(args.log_level or "WARNING")
    instance_id = args.instance_id or f"{config.producer.resolved_instance_id()}-call-{os.getpid()}"
    with Producer(config, instance_id=instance_id, name="call") as producer:
        if args.count is None:
            failed = 0
            for message in args.message:
                try:
                    print(producer.call(message.encode(), timeout=args.timeout).decode("utf-8", "replace"))
                except BurrowError as exc:
                    failed += 1
                    print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1 if failed else 0
        bodies = [m.encode() for m in args.message] or [b"hello"]
        result = run_burst(
            lambda body: producer.call(body, timeout=args.timeout),
            bodies,
            count=args.count,
            concurrency=args.concurrency,
            show_progress=not args.quiet,
        )
        print(result.line())
        return 1 if result.failed else 0


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
    from burrow.tools import dead, sendclient

    parser = argparse.ArgumentParser(prog="burrow", description="Request/response over RabbitMQ.")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("path")
    check.add_argument("--role", choices=("consumer", "producer", "any"), default="any",
                       help="also import the handler when the file is for a consumer (default: any)")
    check.set_defaults(func=cmd_check_config)

    call = sub.add_parser("call", help="send requests through the library and print the replies")
    call.add_argument("--config", required=True)
    call.add_argument("message", nargs="*", help="request bodies (default for a burst: 'hello')")
    call.add_argument("--count", type=int, help="send this many requests as a burst and print a summary")
    call.add_argument("--concurrency", type=int, default=16, help="requests in flight during a burst")
    call.add_argument("--timeout", type=float, help="seconds per request (default: producer.request_timeout)")
    call.add_argument("--instance-id", help="reply queue suffix (default: <host>-call-<pid>)")
    call.add_argument("--quiet", action="store_true", help="no progress bar")
    call.add_argument("--log-level", help="default WARNING")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "call" and args.count is None and not args.message:
        print("burrow call: give at least one MESSAGE, or --count N", file=sys.stderr)
        return EXIT_CONFIG
    return args.func(args)


def _daemon_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=True, help="TOML configuration file")
    parser.add_argument("--daemon", action="store_true", help="detach from the terminal (hosts without systemd)")
    parser.add_argument("--pidfile", help="with --daemon: write and lock this pid file")
    return parser


def _run_daemon(role: str, argv: Sequence[str] | None) -> int:
    args = _daemon_parser(f"burrow-{role}", f"Run the burrow {role} daemon.").parse_args(argv)
    config = _load(args.config)
    log_to_stderr(config.logging.level)
    from burrow.daemon.daemonize import PidFileLocked
    from burrow.handlers import load_handler
    from burrow.daemon.service import run_daemon

    try:
        if role == "consumer":
            load_handler(config.consumer.handler)  # fail on the terminal, before any --daemon fork
        return run_daemon(role, config, detach=args.daemon, pidfile=args.pidfile)
    except HandlerLoadError as exc:
        logger.error("%s: consumer.handler: %s", config.path, exc)
        return EXIT_CONFIG
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
