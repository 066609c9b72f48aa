"""burrow: request/response over RabbitMQ that loses nothing.

The public API::

    from burrow import Producer, load_config, RemoteError, RequestTimeout

    with Producer(load_config("burrow.toml")) as producer:
        producer.call(b"hello", timeout=5)   # b"Consumer processed: hello"
"""

from burrow.config import BurrowConfig, RabbitMQConfig, load_config
from burrow.errors import (
    Backpressure,
    BrokerUnavailable,
    BurrowError,
    ConfigError,
    PublishError,
    RemoteError,
    RequestTimeout,
    UnknownService,
    UnroutableError,
)
from burrow.handlers import RequestContext
from burrow.producer import Producer

__version__ = "0.2.0"

__all__ = [
    "Backpressure",
    "BrokerUnavailable",
    "BurrowConfig",
    "BurrowError",
    "ConfigError",
    "Producer",
    "PublishError",
    "RabbitMQConfig",
    "RemoteError",
    "RequestContext",
    "RequestTimeout",
    "UnknownService",
    "UnroutableError",
    "load_config",
]
