"""``burrow dead``: look at, replay and purge the requests in the dead-letter queue.

Every command reads the dead letters without taking them: it consumes up to the queue's depth
(or ``--limit``) with manual acks, acks only the ones it removed, and closes its channel, which
returns every other one to the queue in its place. A replay publishes the request again to the
request exchange with a publisher confirm and removes the dead letter only after the broker
confirmed the new copy, so an interrupted replay never loses a request (at worst one is replayed
twice, which the producer's duplicate detection and idempotent handlers absorb).

The broker user needs read on the dead-letter queue, and write on the request exchange for
``replay``; nothing else (see the README).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from burrow.amqp.parameters import connection_parameters, default_connection_name
from burrow.config import BurrowConfig
from burrow.deadletters import death_summary
from burrow.protocol import HEADER_DEADLINE
from burrow.services import routing_key, service_argument, service_of_queue

#: prefetch_count is 16 bits: one pass over the queue sees at most this many dead letters.
MAX_SCAN = 65535
#: Seconds without a delivery after which the queue counts as read to its end.
QUIET = 2.0
#: Headers the broker adds on dead-lettering; a replayed request starts without them.
DEATH_HEADERS = ("x-death", "x-first-death-reason", "x-first-death-queue", "x-first-death-exchange",
                 "x-last-death-reason", "x-last-death-queue", "x-last-death-exchange", "x-delivery-count")
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclasses.dataclass
class DeadLetter:
    """One dead letter as read from the queue (still unacked on the reading channel)."""

    delivery_tag: int
    properties: pika.BasicProperties
    body: bytes

    @property
    def headers(self) -> dict[str, Any]:
        return self.properties.headers or {}

    @property
    def id(self) -> str:
        return self.properties.correlation_id or self.properties.message_id or "-"

    @functools.cached_property
    def summary(self) -> tuple[str, str, float | None]:
        """First death reason, queue and time, read from the headers once per letter."""
        return death_summary(self.headers)

    @property
    def reason(self) -> str:
        return self.summary[0] or "-"

    @property
    def died_at(self) -> float | None:
        return self.summary[2]

    def service(self, request_queue: str) -> str:
        """The service the request was for, from the queue it died in ("-" when not a service's)."""
        return service_of_queue(request_queue, self.summary[1]) or "-"

    @property
    def deaths(self) -> int:
        """How often the broker dead-lettered it (more than once after a replay that died again)."""
        deaths = self.headers.get("x-death")
        if not isinstance(deaths, list):
            return 0
        return sum(int(entry.get("count", 1)) for entry in deaths if isinstance(entry, dict))


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``2h``, ``7d`` -> seconds; raises ``argparse.ArgumentTypeError`` otherwise."""
    match = DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 15m, 2h or 7d")
    return float(match.group(1)) * UNITS[match.group(2)]


def _age(died_at: float | None, now: float) -> str:
    if died_at is None:
        return "-"
    seconds = max(0, int(now - died_at))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _preview(body: bytes, width: int = 60) -> str:
    text = body[:width].decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() else "." for ch in text)


def _deliveries(letter: DeadLetter, config: BurrowConfig) -> str:
    """Deliveries before death: known for the delivery limit (limit + 1), else not recorded."""
    return str(config.topology.delivery_limit + 1) if letter.reason == "delivery_limit" else "-"


@contextmanager
def _channel(config: BurrowConfig) -> Iterator[BlockingChannel]:
    """A channel on a fresh connection, closed (returning unacked dead letters) on the way out."""
    parameters = connection_parameters(config.rabbitmq, default_connection_name("dead"))
    connection = pika.BlockingConnection(parameters)
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def read_dead_letters(channel: BlockingChannel, queue: str, limit: int | None = None) -> list[DeadLetter]:
    """Take up to ``limit`` (default: the whole queue, at most :data:`MAX_SCAN`) dead letters,
    oldest first, without acking them."""
    depth = channel.queue_declare(queue, passive=True).method.message_count
    want = min(depth, MAX_SCAN if limit is None else limit, MAX_SCAN)
    letters: list[DeadLetter] = []
    if want == 0:
        return letters
    channel.basic_qos(prefetch_count=want)
    for method, properties, body in channel.consume(queue, auto_ack=False, inactivity_timeout=QUIET):
        if method is None:
            break
        letters.append(DeadLetter(method.delivery_tag, properties, body))
        if len(letters) >= want:
            break
    return letters


def _select(letters: list[DeadLetter], args: argparse.Namespace, request_queue: str) -> list[DeadLetter]:
    chosen = letters
    if getattr(args, "service", None):
        chosen = [letter for letter in chosen if letter.service(request_queue) == args.service]
    if getattr(args, "id", None):
        chosen = [letter for letter in chosen if args.id in (letter.properties.correlation_id, letter.properties.message_id)]
    if getattr(args, "reason", None):
        chosen = [letter for letter in chosen if letter.reason == args.reason]
    return chosen


def cmd_list(config: BurrowConfig, args: argparse.Namespace) -> int:
    queue = config.topology.dead_letter_queue
    now = time.time()
    request_queue = config.topology.request_queue
    with _channel(config) as channel:
        letters = _select(read_dead_letters(channel, queue, args.limit), args, request_queue)
    print(f"{'AGE':>6}  {'REASON':<15} {'SERVICE':<16} {'ID':<34} {'SIZE':>8} {'DELIVERIES':>10} {'DEATHS':>6}  BODY")
    for letter in letters:
        print(f"{_age(letter.died_at, now):>6}  {letter.reason:<15} {letter.service(request_queue):<16} {letter.id:<34} "
              f"{len(letter.body):>8} {_deliveries(letter, config):>10} {letter.deaths:>6}  {_preview(letter.body)}")
    print(f"{len(letters)} dead letter(s) shown from {queue}", file=sys.stderr)
    return 0


def _show_value(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value) if not isinstance(value, str) else value


def cmd_show(config: BurrowConfig, args: argparse.Namespace) -> int:
    with _channel(config) as channel:
        letters = _select(read_dead_letters(channel, config.topology.dead_letter_queue), args,
                          config.topology.request_queue)
    if not letters:
        print(f"burrow dead: no dead letter with id {args.id!r} in {config.topology.dead_letter_queue}", file=sys.stderr)
        return 1
    for letter in letters:
        props = letter.properties
        print(f"id:             {letter.id}")
        print(f"reason:         {letter.reason}")
        print(f"service:        {letter.service(config.topology.request_queue)}")
        for name in ("correlation_id", "message_id", "reply_to", "content_type", "timestamp"):
            print(f"{name + ':':<16}{_show_value(getattr(props, name))}")
        for key, value in sorted(letter.headers.items()):
            if key != "x-death":
                print(f"header {key}: {_show_value(value)}")
        for entry in letter.headers.get("x-death") or []:
            print("x-death:        " + ", ".join(f"{k}={_show_value(v)}" for k, v in sorted(entry.items())))
        print(f"body ({len(letter.body)} bytes):")
        try:
            print(letter.body.decode("utf-8"))
        except UnicodeDecodeError:
            print(letter.body.hex(" ", 16))
        print()
    return 0


def replay_properties(letter: DeadLetter, timeout: float) -> pika.BasicProperties:
    """The request as first published, with a fresh deadline and none of the broker's death headers."""
    props = letter.properties
    headers = {key: value for key, value in letter.headers.items() if key not in DEATH_HEADERS}
    headers[HEADER_DEADLINE] = int((time.time() + timeout) * 1000)
    return pika.BasicProperties(
        content_type=props.content_type, delivery_mode=pika.DeliveryMode.Persistent,
        correlation_id=props.correlation_id, message_id=props.message_id, reply_to=props.reply_to,
        expiration=str(int(timeout * 1000)), timestamp=int(time.time()), headers=headers,
    )


def cmd_replay(config: BurrowConfig, args: argparse.Namespace) -> int:
    if not args.id and not args.all:
        print("burrow dead replay: give an ID or --all", file=sys.stderr)
        return 2
    topology = config.topology
    timeout = config.producer.request_timeout
    replayed = 0
    with _channel(config) as channel:
        letters = _select(read_dead_letters(channel, topology.dead_letter_queue), args, topology.request_queue)
        publisher = channel.connection.channel()
        publisher.confirm_delivery()
        for letter in letters:
            # Back to the service it was for (a letter from no service's queue: the default one).
            service = service_of_queue(topology.request_queue, letter.summary[1])
            try:
                publisher.basic_publish(topology.request_exchange, routing_key(topology.request_queue, service),
                                        letter.body, replay_properties(letter, timeout), mandatory=True)
            except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
                print(f"burrow dead: {letter.id}: the broker refused the replay ({type(exc).__name__}); "
                      "it stays dead-lettered", file=sys.stderr)
                continue
            channel.basic_ack(letter.delivery_tag)
            replayed += 1
            print(f"replayed {letter.id}")
    print(f"{replayed} of {len(letters)} dead letter(s) replayed to {topology.request_exchange}", file=sys.stderr)
    if args.id and not letters:
        print(f"burrow dead: no dead letter with id {args.id!r} in {topology.dead_letter_queue}", file=sys.stderr)
        return 1
    return 0 if replayed == len(letters) else 1


def _confirmed(prompt: str) -> bool:
    if not sys.stdin.isatty():
        print("burrow dead purge: not a terminal; pass --yes to purge without asking", file=sys.stderr)
        return False
    return input(f"{prompt} [y/N] ").strip().lower() in ("y", "yes")


def cmd_purge(config: BurrowConfig, args: argparse.Namespace) -> int:
    queue = config.topology.dead_letter_queue
    cutoff = time.time() - args.older_than
    with _channel(config) as channel:
        letters = [letter for letter in _select(read_dead_letters(channel, queue), args, config.topology.request_queue)
                   if letter.died_at is not None and letter.died_at <= cutoff]
        if not letters:
            print(f"no dead letters older than {args.older_than_text} in {queue}", file=sys.stderr)
            return 0
        if not args.yes and not _confirmed(f"Purge {len(letters)} dead letter(s) older than {args.older_than_text} from {queue}?"):
            return 1
        for letter in letters:
            channel.basic_ack(letter.delivery_tag)
    print(f"purged {len(letters)} dead letter(s) from {queue}", file=sys.stderr)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``burrow dead`` sub-commands; each takes ``--config`` (and ``--log-level``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", required=True, help="TOML file with [rabbitmq] and [topology] (an operator's user)")
    common.add_argument("--log-level", help="default WARNING")
    sub = parser.add_subparsers(dest="dead_command", required=True)
    listing = sub.add_parser("list", parents=[common], help="one line per dead letter: age, reason, id, size, deliveries, body")
    listing.add_argument("--limit", type=int, default=50, help="at most this many, oldest first (default 50)")
    listing.add_argument("--service", type=service_argument, metavar="NAME", help="only those for this service")
    listing.set_defaults(dead_func=cmd_list)
    show = sub.add_parser("show", parents=[common], help="headers, x-death and body of the dead letters with this id")
    show.add_argument("id", help="correlation id (or message id)")
    show.set_defaults(dead_func=cmd_show)
    replay = sub.add_parser("replay", parents=[common], help="publish dead letters to their service again, then remove them")
    replay.add_argument("id", nargs="?", help="correlation id (or message id) of the one to replay")
    replay.add_argument("--all", action="store_true", help="replay every dead letter (see --reason)")
    replay.add_argument("--reason", help="only those the broker dead-lettered for this reason (e.g. delivery_limit)")
    replay.add_argument("--service", type=service_argument, metavar="NAME",
                        help="only those for this service (each goes back to the service it was for)")
    replay.set_defaults(dead_func=cmd_replay)
    purge = sub.add_parser("purge", parents=[common], help="remove dead letters older than a duration")
    purge.add_argument("--older-than", required=True, dest="older_than_text", metavar="DURATION",
                       help="e.g. 90s, 15m, 2h, 7d (by the time the broker dead-lettered them)")
    purge.add_argument("--reason", help="only those dead-lettered for this reason")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(dead_func=cmd_purge)


def run(config: BurrowConfig, args: argparse.Namespace) -> int:
    """Run the chosen sub-command; broker errors become one line and exit 1."""
    if getattr(args, "older_than_text", None) is not None:
        try:
            args.older_than = parse_duration(args.older_than_text)
        except argparse.ArgumentTypeError as exc:
            print(f"burrow dead purge: --older-than: {exc}", file=sys.stderr)
            return 2
    try:
        return int(args.dead_func(config, args))
    except pika.exceptions.ChannelClosedByBroker as exc:
        print(f"burrow dead: the broker refused: {exc.reply_code} {exc.reply_text}", file=sys.stderr)
    except pika.exceptions.AMQPConnectionError as exc:
        rabbitmq = config.rabbitmq
        print(f"burrow dead: cannot connect to {rabbitmq.host}:{rabbitmq.port}: {exc!r}", file=sys.stderr)
    return 1
