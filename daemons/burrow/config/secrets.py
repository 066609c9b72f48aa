"""The broker password: ``rabbitmq.password`` or the first line of ``rabbitmq.password_file``.

The loader calls :func:`resolve_password` after every key passed its rule. With ``read_secrets``
the file name is expanded (``${CREDENTIALS_DIRECTORY}`` from systemd's ``LoadCredential=``) and the
file read, so a daemon fails at start-up naming the file rather than at its first login; without,
the file is left alone so that ``burrow check-config`` can check a file where the secret is absent.
"""

from __future__ import annotations

import dataclasses
import os
import string
from pathlib import Path

from burrow.config.schema import RabbitMQConfig
from burrow.errors import ConfigError

KEY = "rabbitmq.password_file"


def expand(path: str, key: str, value: str) -> str:
    """Expand ``${VAR}`` (e.g. ``${CREDENTIALS_DIRECTORY}``) from the environment, strictly."""
    try:
        return string.Template(value).substitute(os.environ)
    except KeyError as exc:
        raise ConfigError(path, key, f"environment variable {exc.args[0]} is not set") from None
    except ValueError as exc:
        raise ConfigError(path, key, f"bad ${{...}} reference: {exc}") from None


def resolve_password(path: str, rabbitmq: RabbitMQConfig, written: frozenset[str], read_secrets: bool) -> RabbitMQConfig:
    """Return ``rabbitmq`` with its password: as written, ``guest`` when neither key is set, or the
    first line of ``password_file`` (only with ``read_secrets``; otherwise the password stays empty)."""
    if not rabbitmq.password_file:
        return rabbitmq if "password" in written else dataclasses.replace(rabbitmq, password="guest")
    if not read_secrets:
        return rabbitmq
    secret_path = expand(path, KEY, rabbitmq.password_file)
    try:
        secret = Path(secret_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, KEY, f"{secret_path} does not exist") from None
    except PermissionError:
        raise ConfigError(path, KEY, f"{secret_path} is not readable by this user") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(path, KEY, f"cannot read {secret_path}: {exc}") from None
    secret = secret.rstrip("\r\n")
    if not secret:
        raise ConfigError(path, KEY, f"{secret_path} is empty")
    if "\0" in secret:
        raise ConfigError(path, KEY, f"{secret_path} holds a NUL character, which no AMQP password can")
    return dataclasses.replace(rabbitmq, password=secret, password_file=secret_path)
