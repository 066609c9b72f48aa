"""The daemons' least-privilege broker permissions, read from where the deployment grants them.

``ansible/group_vars/brokers/burrow.yml`` is the one place the (configure, write, read) regexes of
the producer's and the consumer's broker users are written; the security test and the daemon
system tests give their users exactly those, so they prove what the roles deploy.
"""

from __future__ import annotations

from pathlib import Path

import yaml

GROUP_VARS = Path(__file__).resolve().parents[2] / "ansible" / "group_vars" / "brokers" / "burrow.yml"
#: The order of the users in ``burrow_service_rabbitmq_users``.
ROLES = ("producer", "consumer")


def permissions() -> dict[str, tuple[str, str, str]]:
    """``{"producer": (configure, write, read), "consumer": (...)}`` as the roles grant them."""
    users = yaml.safe_load(GROUP_VARS.read_text())["burrow_service_rabbitmq_users"]
    granted: dict[str, tuple[str, str, str]] = {}
    for role, user in zip(ROLES, users, strict=True):
        assert user["name"] == f"{{{{ burrow_{role}_rabbitmq_username }}}}", (GROUP_VARS, user["name"])
        (grant,) = user["permissions"]
        granted[role] = (grant["configure_priv"], grant["write_priv"], grant["read_priv"])
    return granted
