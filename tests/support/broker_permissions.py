"""The daemons' least-privilege broker permissions, read from where the deployment grants them.

``ansible/group_vars/brokers/burrow.yml`` is the one place the (configure, write, read) regexes of
the producer's and the consumer's broker users are written; the security test and the daemon
system tests give their users exactly those, so they prove what the roles deploy. The consumer's
regexes name the request queues of its services through ``{{ burrow_consumer_queues }}``, which
:func:`consumer_queues` writes as the group variables' Jinja expression does.
"""

from __future__ import annotations

from pathlib import Path

import yaml

GROUP_VARS = Path(__file__).resolve().parents[2] / "ansible" / "group_vars" / "brokers" / "burrow.yml"
#: The order of the users in ``burrow_service_rabbitmq_users``.
ROLES = ("producer", "consumer")


SERVICE_QUEUES = "{{ burrow_consumer_queues }}"


def consumer_queues(services: tuple[str, ...]) -> str:
    """``burrow_consumer_queues`` for a consumer serving the default service and ``services``."""
    names = "|".join(services)
    return f"requests([.]({names})([.][0-9]+)?)?|x[.]requests[.]({names})" if services else "requests"


def permissions(services: tuple[str, ...] = ()) -> dict[str, tuple[str, str, str]]:
    """``{"producer": (configure, write, read), "consumer": (...)}`` as the roles grant them, the
    consumer serving the named ``services`` besides the default one."""
    users = yaml.safe_load(GROUP_VARS.read_text())["burrow_service_rabbitmq_users"]
    granted: dict[str, tuple[str, str, str]] = {}
    for role, user in zip(ROLES, users, strict=True):
        assert user["name"] == f"{{{{ burrow_{role}_rabbitmq_username }}}}", (GROUP_VARS, user["name"])
        (grant,) = user["permissions"]
        granted[role] = tuple(grant[key].replace(SERVICE_QUEUES, consumer_queues(services))  # type: ignore[assignment]
                              for key in ("configure_priv", "write_priv", "read_priv"))
    return granted
