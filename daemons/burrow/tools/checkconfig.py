"""``burrow check-config``: check a configuration file as installed, without needing its secret.

By default the file is checked the way the daemon would load it (structure, types, ranges, the
consumer's handler imports) except that ``rabbitmq.password_file`` is not read: the shipped
configurations point it at ``${CREDENTIALS_DIRECTORY}``, which only systemd sets, for the unit, from
``LoadCredential=``. The report says which secret the daemon would read and from where. With
``--secrets`` the password file is expanded and read as the daemon does, in this environment.

Exit status: 0 when the file is fine, 78 (``EX_CONFIG``) with one line on stderr naming the file,
the key and the value at fault.
"""

from __future__ import annotations

import argparse
import logging
import os
import string
import sys

from burrow.config import BurrowConfig, load_config
from burrow.errors import ConfigError, HandlerLoadError
from burrow.exitcodes import EX_CONFIG
from burrow.tools import file_argument

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``burrow check-config``'s arguments to its sub-parser."""
    file_argument(parser.add_argument("path", help="the TOML file to check, e.g. /etc/burrow/consumer.toml"))
    parser.add_argument("--role", choices=("consumer", "producer", "any"), default="any",
                        help="also import the handler when the file is for a consumer (default: any)")
    parser.add_argument("--secrets", action="store_true",
                        help="also read rabbitmq.password_file as the daemon would, in this environment")


def secret_source(config: BurrowConfig, read: bool) -> str:
    """One line saying where the daemon gets the broker password from, for the report."""
    rabbitmq = config.rabbitmq
    if not rabbitmq.password_file:
        return "rabbitmq.password, in the file itself (prefer password_file)"
    if read:
        return f"read from {rabbitmq.password_file} (rabbitmq.password_file): OK"
    written = rabbitmq.password_file
    unset = [name for name in string.Template(written).get_identifiers() if name not in os.environ]
    if unset:
        hint = " (systemd sets it from the unit's LoadCredential=)" if unset == ["CREDENTIALS_DIRECTORY"] else ""
        return (f"read at start from {written} (rabbitmq.password_file); not checked: "
                f"{', '.join(unset)} not set here{hint}")
    expanded = string.Template(written).safe_substitute(os.environ)
    return f"read at start from {expanded} (rabbitmq.password_file); not checked without --secrets"


def run(args: argparse.Namespace) -> int:
    """Check ``args.path``; print a short report on stdout and return 0, or one line and 78."""
    try:
        config = load_config(args.path, read_secrets=args.secrets)
    except ConfigError as exc:
        print(f"burrow: {exc}", file=sys.stderr)
        return EX_CONFIG
    lines = [f"{args.path}: OK"]
    if args.role in ("consumer", "any"):
        from burrow.handlers import load_handler
        from burrow.services import handler_key, served

        for name, service in served(config.consumer):
            try:
                load_handler(service.handler)
            except HandlerLoadError as exc:
                print(f"burrow: {args.path}: {handler_key(config.consumer, name)}: {exc}", file=sys.stderr)
                return EX_CONFIG
            lines.append(f"  handler: {service.handler} (imports)" if not config.consumer.services
                         else f"  service {name}: {service.handler} (imports)")
    lines.append(f"  password: {secret_source(config, args.secrets)}")
    print("\n".join(lines))
    return 0
