"""burrow's typed configuration: one frozen object per TOML file, built once and passed in.

``load_config(path)`` reads the file, checks every section, key, type and value, resolves
``password_file`` and returns a :class:`BurrowConfig`. Any problem raises :class:`ConfigError` whose
message names the file, the key and what is wrong, so ``burrow check-config`` can print one line.

The package's parts: :mod:`~burrow.config.rules` (how a key declares its rule), :mod:`~burrow.config.schema`
(every section and key), :mod:`~burrow.config.hosts` (broker addresses), :mod:`~burrow.config.secrets`
(the password), :mod:`~burrow.config.loading` (TOML in) and :mod:`~burrow.config.writing` (TOML out).
"""

from burrow.config.hosts import BrokerNode, parse_node
from burrow.config.loading import load_config, parse_config
from burrow.config.schema import (
    LOG_LEVELS,
    PREFETCH_PER_WORKER,
    BurrowConfig,
    ConsumerConfig,
    LoggingConfig,
    MetricsConfig,
    ProducerConfig,
    RabbitMQConfig,
    ServiceConfig,
    TLSConfig,
    TopologyConfig,
    default_prefetch,
)
from burrow.config.writing import to_toml
from burrow.errors import ConfigError

__all__ = [
    "LOG_LEVELS",
    "PREFETCH_PER_WORKER",
    "BrokerNode",
    "BurrowConfig",
    "ConfigError",
    "ConsumerConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ProducerConfig",
    "RabbitMQConfig",
    "ServiceConfig",
    "TLSConfig",
    "TopologyConfig",
    "default_prefetch",
    "load_config",
    "parse_config",
    "parse_node",
    "to_toml",
]
