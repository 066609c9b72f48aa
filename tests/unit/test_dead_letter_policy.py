"""The broker policies the rabbitmq role sets for burrow, evaluated per Debian release.

RabbitMQ 4.0 (Debian 13) gives a quorum queue that has no delivery limit a default one of 20, and
every return counts: a reject or nack with requeue, or a consumer, channel or connection going away
with the message unacked. ``burrow dead list`` and ``show`` read ``burrow.dead`` by consuming with
manual acks and closing the connection, so every read returns every dead letter once; the watcher
returns a notice it could not answer, and a producer's quorum reply queue gets its unacked replies
back when the producer reconnects or a standby takes over. None of these is a poison message, and
``burrow.dead`` has no dead-letter target, so the 21st return drops the letter for good. RabbitMQ
3.10 (Debian 12) has no default limit and refuses ``delivery-limit: -1`` in a policy, so the role adds
the -1 only where the release's vars file says so (``__rabbitmq_unlimited_deliveries``).

The role is applied here as ``tasks/access.yml`` ("Set the policies.") does it: the release's
addition merged into every policy with ``unlimited_deliveries: true``, and a policy left with an
empty definition not set. The broker is modelled as ``rabbit_quorum_queue`` resolves a queue's
settings: one policy per queue (the highest priority), ``max-length`` the lower of policy and queue
argument, ``overflow`` the policy's, ``delivery-limit`` the lower unless one is negative (4.0: then
the higher, and a negative limit is none). The queues and their arguments are the ones
:func:`burrow.topology.declaration_steps` declares.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from burrow.config import TopologyConfig
from burrow.topology import declaration_steps, reply_queue_name

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
ROLE = REPO / "ansible" / "roles" / "rabbitmq"
BURROW_POLICIES = REPO / "ansible" / "group_vars" / "brokers" / "burrow.yml"

#: What each RabbitMQ series does with delivery limits: its default for a quorum queue without one
#: (None: unlimited), and whether a policy may set a negative limit (unlimited).
SERIES = {
    "3.10": {"default_delivery_limit": None, "negative_limit_allowed": False},
    "4.0": {"default_delivery_limit": 20, "negative_limit_allowed": True},
}
RELEASE_FILES = sorted(path.name for path in (ROLE / "vars").glob("Debian-*.yml"))

TOPOLOGY = TopologyConfig(reply_queue_type="quorum")
REPLY_QUEUE = reply_queue_name(TOPOLOGY, "api-1")
#: The quorum queues burrow reads and may give back, and what each holds.
RETURNED_QUEUES = {
    TOPOLOGY.dead_letter_queue: "dead letter",
    TOPOLOGY.dead_letter_notice_queue: "notice",
    REPLY_QUEUE: "reply",
}


def release_vars(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROLE / "vars" / name).read_text(encoding="utf-8"))


def policies_set(name: str) -> list[dict[str, Any]]:
    """The policies the role sets on a host of release ``name``, each with its final definition."""
    addition = release_vars(name).get("__rabbitmq_unlimited_deliveries", {})
    policies = yaml.safe_load(BURROW_POLICIES.read_text(encoding="utf-8"))["rabbitmq_policies"]
    result = []
    for policy in policies:
        definition = {**policy.get("tags", {}), **(addition if policy.get("unlimited_deliveries", False) else {})}
        if definition:
            result.append({**policy, "tags": definition})
    return result


def declared_queues() -> dict[str, dict[str, Any]]:
    """Queue name -> arguments, as both daemons declare them (a named service and a partition too)."""
    steps = declaration_steps(TOPOLOGY, REPLY_QUEUE)
    queues = {kwargs["queue"]: kwargs.get("arguments", {}) for method, kwargs in steps if method == "queue_declare"}
    for name in (f"{TOPOLOGY.request_queue}.billing", f"{TOPOLOGY.request_queue}.billing.0"):
        queues[name] = queues[TOPOLOGY.request_queue]
    return queues


def applied_policy(policies: list[dict[str, Any]], queue: str) -> dict[str, Any] | None:
    """The one policy the broker applies to ``queue``; a tie at the top priority fails the test,
    because which one wins is then up to the broker."""
    matching = [p for p in policies
                if p.get("apply_to", "queues") in ("queues", "all") and re.search(p["pattern"], queue)]
    if not matching:
        return None
    top = max(int(p.get("priority", 0)) for p in matching)
    winners = [p["name"] for p in matching if int(p.get("priority", 0)) == top]
    assert len(winners) == 1, f"{queue}: policies {winners} tie at priority {top}"
    return next(p for p in matching if p["name"] == winners[0])


def effective(name: str, queue: str) -> dict[str, Any]:
    """What the broker of release ``name`` makes of ``queue``: delivery limit (None: unlimited),
    max-length, overflow."""
    series = SERIES[release_vars(name)["__rabbitmq_series"]]
    policy = applied_policy(policies_set(name), queue)
    definition = policy["tags"] if policy else {}
    arguments = declared_queues()[queue]
    policy_limit, argument_limit = definition.get("delivery-limit"), arguments.get("x-delivery-limit")
    if policy_limit is None and argument_limit is None:
        limit = series["default_delivery_limit"]
    elif policy_limit is None or argument_limit is None:
        limit = argument_limit if policy_limit is None else policy_limit
    elif series["negative_limit_allowed"] and min(policy_limit, argument_limit) < 0:
        limit = max(policy_limit, argument_limit)
    else:
        limit = min(policy_limit, argument_limit)
    lengths = [value for value in (definition.get("max-length"), arguments.get("x-max-length")) if value is not None]
    return {
        "delivery_limit": None if limit is None or limit < 0 else limit,
        "max_length": min(lengths) if lengths else None,
        "overflow": definition.get("overflow", arguments.get("x-overflow", "drop-head")),
    }


def test_every_release_vars_file_names_a_modelled_series() -> None:
    assert RELEASE_FILES == ["Debian-12.yml", "Debian-13.yml"]
    for name in RELEASE_FILES:
        assert release_vars(name)["__rabbitmq_series"] in SERIES, name


@pytest.mark.parametrize("queue", list(RETURNED_QUEUES))
def test_returned_queues_are_quorum_queues(queue: str) -> None:
    assert declared_queues()[queue]["x-queue-type"] == "quorum"


@pytest.mark.parametrize("release", RELEASE_FILES)
@pytest.mark.parametrize("queue", list(RETURNED_QUEUES))
def test_reading_and_returning_never_drops_a_message(release: str, queue: str) -> None:
    limit = effective(release, queue)["delivery_limit"]
    series = release_vars(release)["__rabbitmq_series"]
    # A message returned more than `limit` times is gone: the last read that sees it is read limit + 1.
    assert limit is None, (f"{release} (RabbitMQ {series}): {queue} drops a {RETURNED_QUEUES[queue]} on read "
                           f"{limit + 1} (delivery limit {limit})")


@pytest.mark.parametrize("release", RELEASE_FILES)
def test_every_policy_definition_is_one_the_release_accepts(release: str) -> None:
    series = SERIES[release_vars(release)["__rabbitmq_series"]]
    for policy in policies_set(release):
        assert policy["tags"], f"{release}: {policy['name']} has an empty definition (RabbitMQ refuses it)"
        limit = policy["tags"].get("delivery-limit")
        if limit is not None and not series["negative_limit_allowed"]:
            assert limit >= 0, f"{release}: {policy['name']} sets delivery-limit {limit}, which RabbitMQ 3.10 refuses"


def test_on_debian_12_only_the_request_policy_sets_a_delivery_limit() -> None:
    policies = policies_set("Debian-12.yml")
    limits = {p["name"]: p["tags"]["delivery-limit"] for p in policies if "delivery-limit" in p["tags"]}
    assert limits == {"burrow-requests": TOPOLOGY.delivery_limit}


@pytest.mark.parametrize("release", RELEASE_FILES)
@pytest.mark.parametrize("queue", ["burrow.requests", "burrow.requests.billing", "burrow.requests.billing.0"])
def test_requests_still_dead_letter_after_the_delivery_limit(release: str, queue: str) -> None:
    assert effective(release, queue)["delivery_limit"] == TOPOLOGY.delivery_limit


@pytest.mark.parametrize("release", RELEASE_FILES)
def test_the_dead_letter_queue_keeps_its_length_limit_and_refuses_beyond_it(release: str) -> None:
    result = effective(release, TOPOLOGY.dead_letter_queue)
    assert (result["max_length"], result["overflow"]) == (100000, "reject-publish")


@pytest.mark.parametrize("release", RELEASE_FILES)
def test_the_notice_queue_keeps_dropping_its_oldest_notices(release: str) -> None:
    """A notice queue that refused new notices when full would hold up at-least-once dead-lettering
    into ``burrow.dead`` itself (:func:`burrow.topology.notice_queue_arguments`)."""
    result = effective(release, TOPOLOGY.dead_letter_notice_queue)
    assert (result["max_length"], result["overflow"]) == (10000, "drop-head")


def test_the_readme_policy_for_brokers_without_the_role_lifts_the_limit_on_the_same_queues() -> None:
    """The one ``rabbitmqctl set_policy`` line the README gives operators of a 4.x broker without
    the role: a -1 delivery limit on exactly the queues above, none on the request queues."""
    text = README.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.startswith("rabbitmqctl set_policy")]
    assert len(lines) == 1, lines
    arguments = shlex.split(lines[0])
    pattern, definition = arguments[-2:]
    assert arguments[arguments.index("--apply-to") + 1] == "queues"
    assert json.loads(definition) == {"delivery-limit": -1}
    for queue in declared_queues():
        assert bool(re.search(pattern, queue)) == (queue in RETURNED_QUEUES), queue
    assert re.search(pattern, f"{TOPOLOGY.reply_queue_prefix}.api-1.classic") is None
