"""pika's connection parameters from burrow's configuration, for one broker node.

The engines' connections (:class:`burrow.amqp.setup.RabbitMQSetup`) and the operator commands
that open a connection of their own (``burrow dead``, ``burrow call``'s reachability probe) build
their parameters here, so credentials, TLS and timeouts mean the same everywhere.
"""

from __future__ import annotations

import socket
import ssl

import pika

from burrow.config import BrokerNode, RabbitMQConfig


def connection_parameters(
    config: RabbitMQConfig, connection_name: str, node: BrokerNode | None = None
) -> pika.ConnectionParameters:
    """Translate the config into pika's parameters (credentials, TLS, heartbeat, timeouts) for
    ``node`` (default: the first of ``config.nodes()``). TLS checks the certificate against
    ``tls.server_hostname`` or, when that is empty, the node's own name."""
    node = node or config.nodes()[0]
    ssl_options = None
    if config.tls.enabled:
        context = ssl.create_default_context(cafile=config.tls.ca_file or None)
        if config.tls.cert_file:
            context.load_cert_chain(config.tls.cert_file, config.tls.key_file)
        if not config.tls.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        ssl_options = pika.SSLOptions(context, server_hostname=config.tls.server_hostname or node.host)
    return pika.ConnectionParameters(
        host=node.host,
        port=node.port,
        virtual_host=config.virtual_host,
        credentials=pika.PlainCredentials(config.username, config.password, erase_on_connect=False),
        heartbeat=config.heartbeat,
        connection_attempts=config.connection_attempts,
        socket_timeout=config.socket_timeout,
        blocked_connection_timeout=config.blocked_connection_timeout,
        ssl_options=ssl_options,
        client_properties={"connection_name": config.connection_name or connection_name},
    )


def default_connection_name(role: str) -> str:
    """The name the broker shows for a connection of ``role`` from this host (``burrow-<role>@<host>``)."""
    return f"burrow-{role}@{socket.gethostname()}"


__all__ = ["connection_parameters", "default_connection_name"]
