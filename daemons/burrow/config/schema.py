"""burrow's configuration schema: one frozen dataclass per TOML section, each key with its rule.

Every key is declared once, here, with its default, its rule and its meaning (see
:mod:`burrow.config.rules`); the loader, the TOML writer, the README's configuration reference and
the tests over every key all read them from these fields.

Bounds are what the code and the broker can use: durations fit an AMQP expiration (a 32-bit count
of milliseconds, so at most :data:`MAX_SECONDS`, about 49.7 days, and at least a millisecond where 0
has no meaning), ports and the heartbeat are 16-bit, the prefetch count is AMQP's 16-bit field,
message sizes stop at RabbitMQ's largest ``max_message_size``.
"""

from __future__ import annotations

import re
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

from burrow.config.hosts import BrokerNode, host_or_hosts, hosts_problem, is_host, parse_node
from burrow.config.rules import Between, Check, OneOf, Text, named_tables, section, setting, table

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: The longest duration in seconds an AMQP expiration or ``x-expires`` can carry: RabbitMQ refuses
#: more than 2**32 - 1 milliseconds.
MAX_SECONDS = (2**32 - 1) // 1000
#: The shortest duration where 0 means nothing: AMQP expirations count whole milliseconds.
MIN_SECONDS = 0.001
#: RabbitMQ's hard limit on ``max_message_size`` (its default is 128 MiB); no broker accepts more.
MAX_MESSAGE_BYTES = 512 * 1024 * 1024
#: The longest Unix socket path (``sun_path`` holds 108 bytes with the closing NUL).
MAX_SOCKET_PATH = 107
#: AMQP short strings (exchange, queue and virtual host names) hold at most 255 bytes.
SHORT_STRING = 255

SECONDS = Between(MIN_SECONDS, MAX_SECONDS, "seconds")
SECONDS_OR_0 = Between(0, MAX_SECONDS, "seconds")
PORT = Between(1, 65535, what="a TCP port")
NAME = Text(max_bytes=SHORT_STRING)
MESSAGE_BYTES = Between(1, MAX_MESSAGE_BYTES, "bytes")
QUEUE_TYPES = OneOf(("quorum", "classic"))
#: A service's name becomes a queue name, a routing key, part of a broker permission regex and a
#: metric label: nothing in it may need quoting in any of those (no ".", which also keeps it apart
#: from the default service's routing key, the request queue's own name).
SERVICE_NAME = Text(max_bytes=64, accept=re.compile(r"[a-z0-9][a-z0-9_-]*").fullmatch,
                    shape="lowercase letters, digits, '-' and '_', starting with a letter or digit")


def _tls_pair(tls: Any, written: frozenset[str]) -> tuple[str, str] | None:
    if tls.enabled and bool(tls.cert_file) != bool(tls.key_file):
        return "cert_file", "cert_file and key_file go together"
    return None


def _password_or_file(rabbitmq: Any, written: frozenset[str]) -> tuple[str, str] | None:
    if "password" in written and rabbitmq.password_file:
        return "password_file", "set either password or password_file, not both"
    return None


def _handler_spec(value: str) -> bool:
    module, sep, attr = value.partition(":")
    return bool(sep and module and attr)


@section(Check(("enabled", "cert_file", "key_file"), _tls_pair))
@dataclass(frozen=True, slots=True)
class TLSConfig:
    """TLS towards the broker; ``verify`` checks the broker's certificate and host name."""

    enabled: bool = setting(False, None, "TLS towards the broker")
    ca_file: str = setting("", Text(empty=True), "PEM bundle that signed the broker's certificate")
    cert_file: str = setting("", Text(empty=True), "client certificate, when the broker asks for one")
    key_file: str = setting("", Text(empty=True), "the client certificate's key")
    server_hostname: str = setting("", Text(empty=True), "name checked against every node's certificate; "
                                   "default: the node connected to")
    verify: bool = setting(True, None, "verify the broker's certificate; false only for throwaway test brokers")


@section(Check(("host", "hosts"), host_or_hosts), Check(("hosts", "port"), hosts_problem),
         Check(("password", "password_file"), _password_or_file))
@dataclass(frozen=True, slots=True)
class RabbitMQConfig:
    """How to reach and log in to the broker. The password never appears in ``repr()``.

    ``host`` names the one node of a single broker; ``hosts`` lists every node of a cluster (the
    clients pick one at random and fail over to the others). :meth:`nodes` gives either as a list.
    """

    host: str = setting("localhost", Text(accept=is_host, shape="a host name or address"),
                        "the broker, when it is one node")
    hosts: tuple[str, ...] = setting((), None, "every node of a cluster instead of `host` (never both): "
                                     '"host", "host:port" or "[v6]:port", the port defaulting to `port`')
    port: int = setting(5672, PORT, "AMQP port (5671 is usual with TLS)")
    virtual_host: str = setting("/", NAME, "the broker's virtual host")
    username: str = setting("guest", NAME, "broker user")
    password: str = setting("", Text(empty=True), 'broker password; "guest" when neither this nor password_file '
                            "is set", secret=True)
    password_file: str = setting("", Text(empty=True), "file holding the password instead (never both); "
                                 "${CREDENTIALS_DIRECTORY} (systemd LoadCredential=) is expanded")
    heartbeat: int = setting(30, Between(0, 65535, "seconds"), "the broker drops a peer silent for 2 x heartbeat; "
                             "0 turns heartbeats off")
    connection_attempts: int = setting(1, Between(1, 100), "attempts per connect; burrow retries forever with backoff")
    # Less than a tenth of a second would fail connects on a merely busy machine, and a failed first
    # connect waits out reconnect_initial_delay.
    socket_timeout: float = setting(10.0, Between(0.1, MAX_SECONDS, "seconds"),
                                    "seconds to establish the TCP connection")
    blocked_connection_timeout: float = setting(60.0, SECONDS, "seconds a memory/disk alarm may block us "
                                                "before we reconnect")
    reconnect_initial_delay: float = setting(0.5, SECONDS, "first reconnect delay; doubled each failure, with jitter")
    reconnect_max_delay: float = setting(30.0, SECONDS, "the cap of that backoff")
    connection_name: str = setting("", Text(empty=True), 'shown in the management UI; default "burrow-<role>@<host>"')
    tls: TLSConfig = table(TLSConfig, "TLS towards the broker")

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> "RabbitMQConfig":
        """Build a config from an ``amqp://user:pass@host:port/vhost`` URL (tests, ``AMQP_URL``)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError(f"not an AMQP URL: scheme {parts.scheme!r}")
        vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        values: dict[str, Any] = {
            "host": parts.hostname or "localhost",
            "port": parts.port or (5671 if parts.scheme == "amqps" else 5672),
            "virtual_host": vhost,
            "username": urllib.parse.unquote(parts.username or "guest"),
            "password": urllib.parse.unquote(parts.password or "guest"),
        }
        if parts.scheme == "amqps":
            values["tls"] = TLSConfig(enabled=True)
        values.update(overrides)
        return cls(**values)

    def nodes(self) -> tuple[BrokerNode, ...]:
        """Every node to connect to: the ``hosts`` entries, or ``host`` alone; ports default to ``port``."""
        if not self.hosts:
            return (BrokerNode(self.host, self.port),)
        return tuple(parse_node(entry, self.port) for entry in self.hosts)


@section()
@dataclass(frozen=True, slots=True)
class TopologyConfig:
    """Names and arguments of the exchanges and queues both sides declare."""

    request_exchange: str = setting("burrow.x.requests", NAME, "direct exchange the producer publishes requests to")
    request_queue: str = setting("burrow.requests", NAME, "durable queue the consumers read")
    queue_type: str = setting("quorum", QUEUE_TYPES, "quorum (replicated, delivery limit) or classic "
                              "(no delivery limit)")
    delivery_limit: int = setting(5, Between(1, 1000), "quorum only: deliveries before a request is dead-lettered")
    reply_exchange: str = setting("burrow.x.replies", NAME, "direct exchange consumers publish replies to")
    reply_queue_prefix: str = setting("burrow.replies", Text(max_bytes=100),
                                      'reply queue "<prefix>.<producer.instance_id>.<type>", type classic or quorum')
    reply_queue_type: str = setting("auto", OneOf(("auto", "quorum", "classic")),
                                    "auto (quorum when rabbitmq.hosts names more than one node, else classic), "
                                    "quorum (replies survive a node's loss) or classic (one node)")
    reply_queue_expires: int = setting(3600, Between(1, MAX_SECONDS, "seconds"),
                                       "seconds an abandoned reply queue lives (x-expires)")
    dead_letter_exchange: str = setting("burrow.x.dead", NAME, "where the request queue dead-letters to")
    dead_letter_queue: str = setting("burrow.dead", NAME, "dead letters, for `burrow dead`")
    dead_letter_notice_queue: str = setting("burrow.dead.notices", NAME, "copies of dead letters for the "
                                            "consumers' watcher")

    @classmethod
    def prefixed(cls, prefix: str, **overrides: Any) -> "TopologyConfig":
        """The default layout under another name prefix (``<prefix>.x.requests``, ...), so that
        several independent systems (tests, benchmarks) can share one broker."""
        names = {
            "request_exchange": f"{prefix}.x.requests",
            "request_queue": f"{prefix}.requests",
            "reply_exchange": f"{prefix}.x.replies",
            "reply_queue_prefix": f"{prefix}.replies",
            "dead_letter_exchange": f"{prefix}.x.dead",
            "dead_letter_queue": f"{prefix}.dead",
            "dead_letter_notice_queue": f"{prefix}.dead.notices",
        }
        return cls(**{**names, **overrides})


@section()
@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """The producer library's and daemon's settings."""

    # With topology.reply_queue_prefix's 100 bytes, the reply queue's name stays an AMQP short string.
    instance_id: str = setting("", Text(empty=True, max_bytes=128), "names the durable reply queue; one live "
                               "producer per id; default: this host's name")
    reply_mode: str = setting("queue", OneOf(("queue", "direct")), "queue (durable, survives a producer restart) "
                              "or direct (RabbitMQ direct reply-to: faster, replies lost on a producer restart)")
    request_timeout: float = setting(30.0, SECONDS, "default deadline; sent as the AMQP expiration too")
    max_in_flight: int = setting(1024, Between(1, 1_000_000), "requests published but not answered; "
                                 "submit() blocks beyond it")
    max_message_bytes: int = setting(1048576, MESSAGE_BYTES, "largest request body accepted")
    shutdown_timeout: float = setting(30.0, SECONDS_OR_0, "seconds to wait for in-flight replies when stopping")
    socket: str = setting("/run/burrow/producer.sock", Text(max_bytes=MAX_SOCKET_PATH),
                          "burrow-producer's local HTTP API (Unix socket)")
    socket_mode: int = setting(0o660, Between(0, 0o777, octal=True), "the socket's file mode")
    unavailable_wait: float = setting(5.0, SECONDS_OR_0, "seconds an API request waits for a lost broker "
                                      "connection to come back (failover, a drained broker) before it is "
                                      "answered 503; 0 answers at once")

    def resolved_instance_id(self) -> str:
        """The reply queue's stable suffix: ``instance_id`` or, by default, this host's name."""
        return self.instance_id or socket.gethostname()


#: Requests the consumer holds per worker when ``consumer.prefetch`` is 0. Chosen by
#: ``make bench-windows`` (benchmarks/RESULTS.md, "32, 64 or adaptive"): with 8 workers and a slow
#: handler mix, a window of 64 carried 1.19x (one consumer) and 1.13x (three) the requests of 32,
#: and a burst's last answer came sooner with no worse tail against its median; the adaptive
#: window did no better than 64. Bigger batches of deliveries, confirms and acks cost less CPU per
#: request; a poison request no longer takes its neighbours with it (redeliveries are taken one at
#: a time).
PREFETCH_PER_WORKER = 8
#: The most handler threads; with :data:`PREFETCH_PER_WORKER` the default window stays far below
#: AMQP's 16-bit prefetch count.
MAX_CONCURRENCY = 1024


def default_prefetch(concurrency: int) -> int:
    """The request window of a consumer with ``concurrency`` workers and ``prefetch = 0``."""
    return PREFETCH_PER_WORKER * concurrency


#: The most queues one service is split over. Each partition is a queue with its own leader, bound to
#: the service's consistent-hash exchange with weight 1, and each consumer of the service holds a
#: window on every one of them: beyond a few partitions per broker node more queues only add
#: channels' work and memory, so 64 is far past any cluster burrow targets.
MAX_PARTITIONS = 64


def _default_service_unsplit(consumer: Any, written: frozenset[str]) -> tuple[str, str] | None:
    default = consumer.services.get("default")
    if default is not None and default.partitions > 1:
        return "services", ("default.partitions must be 1: the default service keeps the "
                            "one queue earlier releases declared; split a named service instead")
    return None


def _handler_written(service: Any, written: frozenset[str]) -> tuple[str, str] | None:
    return None if "handler" in written else ("handler", 'is required: "module:function"')


@section(Check(("handler",), _handler_written))
@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """One named service a consumer serves (``[consumer.services.<name>]``); 0 takes ``[consumer]``'s value."""

    # Required (a check refuses a table without it), so the default only shows its shape.
    handler: str = setting("module:function", Text(accept=_handler_spec, shape="'module:function'"),
                           "required: the service's handler")
    concurrency: int = setting(0, Between(0, MAX_CONCURRENCY), "the service's handler threads (async def: "
                               "requests awaited at once); 0: [consumer] concurrency")
    prefetch: int = setting(0, Between(0, 65535), "the service's unacked requests; 0: [consumer] prefetch")
    partitions: int = setting(1, Between(1, MAX_PARTITIONS), "queues the service is split over (consistent "
                              "hash on the request key); 1: one queue")


def _default_service_once(consumer: Any, written: frozenset[str]) -> tuple[str, str] | None:
    if "handler" in written and consumer.services:
        return "handler", ("with [consumer.services.<name>] tables, the default service is one of them: "
                           "write its handler as [consumer.services.default] handler (or leave it out)")
    return None


@section(Check(("handler", "services"), _default_service_once), Check(("services",), _default_service_unsplit))
@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """The consumer daemon's settings."""

    handler: str = setting("burrow.handlers:echo", Text(accept=_handler_spec, shape="'module:function'"),
                           "takes the body (and a context) and returns bytes")
    concurrency: int = setting(8, Between(1, MAX_CONCURRENCY), "handler worker threads, or for an async def "
                               "handler the requests awaited at once on the daemon's one event loop")
    prefetch: int = setting(0, Between(0, 65535), "unacked requests held; 0 means 8 x concurrency; after a "
                            "(re)start redeliveries are taken one at a time, then the full window opens")
    window: str = setting("fixed", OneOf(("fixed", "adaptive")), "fixed: the window is prefetch; adaptive: it "
                          "starts there and moves between 1 and 16 requests per worker, growing while the replies' "
                          "confirm latency stays flat and shrinking when it rises")
    max_message_bytes: int = setting(1048576, MESSAGE_BYTES, "bigger requests are dead-lettered")
    content_types: tuple[str, ...] = setting(("application/octet-stream", "text/plain", "application/json"), None,
                                             "accepted; others are dead-lettered")
    include_traceback: bool = setting(False, None, "send the handler's traceback in error replies")
    shutdown_timeout: float = setting(30.0, SECONDS_OR_0, "seconds to finish in-flight handlers when stopping")
    dead_letter_notices: bool = setting(True, None, "run the dead-letter watcher in this consumer")
    blocking_warning: float = setting(0.1, Between(MIN_SECONDS, 60), "an async def handler holding the event loop "
                                      "longer than this many seconds (a blocking call) is logged")
    services: dict[str, ServiceConfig] = named_tables(
        ServiceConfig, SERVICE_NAME, "named services, each on its own queue <topology.request_queue>.<name> with "
        "its own threads; none: the default service alone, with handler above; \"default\" is the default service")

    def effective_prefetch(self, concurrency: int) -> int:
        """Unacked requests to hold with ``concurrency`` workers (the live count after a reload):
        ``prefetch`` or, when 0, :func:`default_prefetch`."""
        return self.prefetch or default_prefetch(concurrency)


@section()
@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """The daemons' log level (journald gets every record at or above it)."""

    level: str = setting("INFO", OneOf(LOG_LEVELS, fold_case=True), "log level")


@section()
@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus metrics on ``http://host:port/metrics``."""

    enabled: bool = setting(False, None, "serve Prometheus metrics")
    host: str = setting("127.0.0.1", Text(accept=is_host, shape="a host name or address"),
                        "address the metrics listen on (keep it local)")
    port: int = setting(9419, PORT, "port of the metrics")


@dataclass(frozen=True, slots=True)
class BurrowConfig:
    """One daemon's whole configuration; ``path`` is the file it came from (or ``<defaults>``)."""

    rabbitmq: RabbitMQConfig = table(RabbitMQConfig, "the broker")
    topology: TopologyConfig = table(TopologyConfig, "exchange and queue names")
    producer: ProducerConfig = table(ProducerConfig, "the producer")
    consumer: ConsumerConfig = table(ConsumerConfig, "the consumer daemon")
    logging: LoggingConfig = table(LoggingConfig, "logging")
    metrics: MetricsConfig = table(MetricsConfig, "Prometheus metrics")
    path: str = "<defaults>"
