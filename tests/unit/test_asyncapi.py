"""docs/asyncapi.yaml, the wire contract other teams read: it validates with the AsyncAPI parser,
and it names everything burrow's code puts on the wire, so the document and the code cannot drift."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

import pika

from burrow import partitions, protocol, services, tracing
from burrow.config import ConsumerConfig, RabbitMQConfig, TopologyConfig
from burrow.config.schema import SERVICE_NAME
from burrow.protocol import Outcome, Rejection
from burrow.topology import DIRECT_REPLY_TO, reply_queue_name

REPO = Path(__file__).resolve().parents[2]
DOCUMENT = REPO / "docs" / "asyncapi.yaml"
EXAMPLES = REPO / "examples" / "node"
#: Every AMQP basic property a client can set; burrow's code must not set one the document leaves out.
#: Names a service may have, and names it may not, to hold the document's name rule against the code's.
SERVICE_NAMES = ("resize", "a", "9lives", "billing_v2", "x-1", "z" * 64)
NOT_SERVICE_NAMES = ("", "Resize", "a.b", "-x", "_x", "z" * 65, "a b", "r\u00e9sum\u00e9", "a/b")
AMQP_PROPERTIES = ("content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id",
                   "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return yaml.safe_load(DOCUMENT.read_text())


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """The pinned npm packages, installed once into the cache by the project's script."""
    result = subprocess.run([str(REPO / "scripts" / "node-deps.sh")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def fields(document: dict[str, Any], kind: str) -> set[str]:
    """Names of schema properties the document marks as an AMQP ``property`` or message ``header``
    (``x-amqp-field``), directly or in the schema a local ``$ref`` points to."""

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        target: Any = document
        for part in node.get("$ref", "#").lstrip("#/").split("/"):
            target = target[part] if part else target
        return target if "$ref" in node else node

    def walk(node: object, in_properties: bool = False) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if in_properties and isinstance(value, dict) and resolve(value).get("x-amqp-field") == kind:
                    yield key
                yield from walk(value, key == "properties" and not in_properties)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    return set(walk(document["components"]))


def code_headers() -> set[str]:
    """Every header name protocol.py defines (``HEADER_*``), and the trace header it propagates."""
    names = {value for name, value in vars(protocol).items() if name.startswith("HEADER_") and isinstance(value, str)}
    return names | {tracing.HEADER}


def outcomes() -> list[Outcome]:
    return [Outcome(b"fine"), Outcome(b"boom", error_type="ValueError", traceback="Traceback ..."),
            Outcome.rejection(Rejection(protocol.REJECT_STALE, "late"))]


def set_properties(properties: object) -> set[str]:
    return {name for name in AMQP_PROPERTIES if getattr(properties, name) is not None} - {"headers"}


def test_the_document_validates_with_the_asyncapi_parser(node_modules):
    result = subprocess.run(["node", "validate-asyncapi.js", str(DOCUMENT)], cwd=EXAMPLES, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "NODE_PATH": str(node_modules)})
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["version"] == "3.0.0"
    assert set(summary["channels"]) == {"requests", "replies", "directReplyTo", "deadLetters"}
    assert {"callWithReplyQueue", "callWithDirectReplyTo", "serveRequests"} <= set(summary["operations"])
    assert {"request", "replyOk", "replyError", "replyRejected", "deadLetterNotice"} <= set(summary["messages"])


def test_every_header_protocol_py_defines_is_named_in_the_document(document):
    missing = code_headers() - fields(document, "header")
    assert not missing, f"{DOCUMENT} does not name the header(s) {sorted(missing)} that burrow/protocol.py defines"


def test_the_document_names_no_burrow_header_the_code_lacks(document):
    ghosts = {name for name in fields(document, "header") if name.startswith("x-burrow-")} - code_headers()
    assert not ghosts, f"{DOCUMENT} names header(s) {sorted(ghosts)} that burrow/protocol.py does not define"


def test_every_header_and_property_a_request_or_reply_carries_is_named(document):
    headers = protocol.request_headers({}, 1_800_000_000.0)
    request = protocol.request_properties("c-1", "burrow.replies.p.quorum", headers, 5000, 1_800_000_000.0)
    on_wire_headers = set(headers)
    on_wire_properties = set_properties(request)
    for outcome in outcomes():
        reply = protocol.reply_properties("c-1", outcome, persistent=True, traceparent=headers[tracing.HEADER])
        on_wire_headers |= set(reply.headers)
        on_wire_properties |= set_properties(reply)
    assert on_wire_headers - fields(document, "header") == set()
    assert on_wire_properties - fields(document, "property") == set()


def test_statuses_and_reject_reasons_match_the_code(document):
    schemas = document["components"]["schemas"]
    statuses = {value for name, value in vars(protocol).items() if name.startswith("STATUS_")}
    assert set(schemas["Status"]["enum"]) == statuses
    reasons = {value for name, value in vars(protocol).items() if name.startswith("REJECT_")}
    reject = schemas["RejectReason"]
    assert set(reject["enum"]) | set(reject["x-burrow-not-sent"]) == reasons
    assert not set(reject["enum"]) & set(reject["x-burrow-not-sent"])


def test_names_content_types_and_reply_paths_match_the_defaults(document):
    topology = TopologyConfig()
    channels = document["channels"]
    assert channels["requests"]["bindings"]["amqp"]["exchange"]["name"] == topology.request_exchange
    assert document["components"]["parameters"]["routingKey"]["default"] == topology.request_queue
    assert channels["replies"]["bindings"]["amqp"]["exchange"]["name"] == topology.reply_exchange
    assert channels["directReplyTo"]["address"] == DIRECT_REPLY_TO
    assert channels["deadLetters"]["address"] == topology.dead_letter_queue
    schemas = document["components"]["schemas"]
    content_type = schemas["RequestHeaders"]["properties"]["content_type"]
    assert tuple(content_type["x-burrow-default-accepted"]) == ConsumerConfig().content_types
    examples = {example.split(";")[0] for example in content_type["examples"]}
    assert set(content_type["x-burrow-default-accepted"]) <= examples
    assert schemas["ReplyHeaders"]["properties"]["content_type"]["const"] == protocol.CONTENT_TYPE
    assert document["defaultContentType"] == protocol.CONTENT_TYPE


@pytest.mark.parametrize(("reply_to", "code"), [
    ("burrow.replies.p-1.quorum", protocol.REJECT_REPLY_UNROUTABLE),
    ("amq.gen-JzTY20BRgKO-HjmUJj0wLg", protocol.REJECT_REPLY_DEFAULT_EXCHANGE),
])
def test_an_unroutable_reply_names_the_tutorial_pattern_only_for_a_foreign_caller(reply_to, code):
    rejection = protocol.unroutable_reply(reply_to, f"reply unroutable: no queue {reply_to!r} (NO_ROUTE)",
                                          reply_exchange="burrow.x.replies", reply_queue_prefix="burrow.replies")
    assert rejection.code == code
    names_pattern = "default exchange" in rejection.reason and protocol.CONTRACT_DOCUMENT in rejection.reason
    assert names_pattern == (code == protocol.REJECT_REPLY_DEFAULT_EXCHANGE)


def test_a_default_consumer_accepts_exactly_the_documented_content_types(document):
    """Each documented type passes a default consumer's checks, with parameters or in capitals;
    another type is rejected ``content_type``; no content type at all passes."""
    field = document["components"]["schemas"]["RequestHeaders"]["properties"]["content_type"]
    accepted = field["x-burrow-default-accepted"]

    def verdict(content_type: str | None) -> str | None:
        properties = pika.BasicProperties(correlation_id="c-1", reply_to="burrow.replies.x", content_type=content_type)
        rejection = protocol.validate_request(properties, b"{}", max_message_bytes=1024,
                                              content_types=ConsumerConfig().content_types, now=0.0)
        return rejection.code if rejection else None

    for content_type in accepted:
        assert verdict(content_type) is None, content_type
        assert verdict(f"{content_type.upper()}; charset=utf-8") is None, content_type
    for content_type in ("application/xml", "image/png", "application/x-www-form-urlencoded"):
        assert verdict(content_type) == protocol.REJECT_CONTENT_TYPE, content_type
    assert verdict(None) is None


@pytest.mark.parametrize("prefix", [None, "t.prefixed"])
def test_the_partition_rule_is_the_codes(document, prefix):
    """The split service's exchange, hash header, bindings and queues the document names are the
    ones burrow.partitions declares, and its routing key stays the service's."""
    topology = TopologyConfig() if prefix is None else TopologyConfig.prefixed(prefix)
    rule = service_rule(document)["partitioned"]
    name = "fraud"
    names = {"requestQueue": topology.request_queue, "requestExchange": topology.request_exchange, "name": name}
    declare, bind = partitions.exchange_steps(topology, name)
    assert declare[1]["exchange"] == rule["exchange"].format(**names) == partitions.hash_exchange(topology, name)
    assert declare[1]["exchange_type"] == rule["exchangeType"]
    assert declare[1]["arguments"] == {"hash-header": rule["hashHeader"]}
    assert rule["hashHeader"] in fields(document, "header")
    assert bind[1] == {"destination": rule["exchange"].format(**names), "source": topology.request_exchange,
                       "routing_key": rule["routingKey"].format(**names)}
    for index in range(3):
        binding = partitions.partition_binding(topology, name, index)
        assert binding["queue"] == rule["queue"].format(i=index, **names), index
        assert binding["routing_key"] == rule["bindingKey"]
    assert partitions.partition_queues(topology, name, 3) == [rule["queue"].format(i=i, **names) for i in range(3)]


def service_rule(document: dict[str, Any]) -> dict[str, Any]:
    return document["components"]["parameters"]["routingKey"]["x-burrow-services"]


@pytest.mark.parametrize("request_queue", [TopologyConfig().request_queue, "t.prefixed.burrow.requests"])
def test_the_routing_key_rule_is_the_codes(document, request_queue):
    """The document's routing key and queue of the default service and of named services are the
    ones burrow.services computes (the consumer binds, the producer publishes with them)."""
    rule = service_rule(document)
    assert rule["default"]["names"] == [services.DEFAULT_SERVICE]
    for service in (None, *rule["default"]["names"]):
        default = {key: rule["default"][key].format(requestQueue=request_queue) for key in ("routingKey", "queue")}
        assert default == {"routingKey": services.routing_key(request_queue, service),
                           "queue": services.queue_name(request_queue, service)}
    for name in SERVICE_NAMES:
        named = {"requestQueue": request_queue, "name": name}
        assert rule["named"]["routingKey"].format(**named) == services.routing_key(request_queue, name), name
        assert rule["named"]["queue"].format(**named) == services.queue_name(request_queue, name), name
        assert services.service_of_queue(request_queue, rule["named"]["queue"].format(**named)) == name


def test_the_service_name_rule_is_the_codes(document):
    rule = service_rule(document)["named"]["name"]
    for name in SERVICE_NAMES + NOT_SERVICE_NAMES:
        in_document = re.search(rule["pattern"], name) is not None and len(name) <= rule["maxLength"]
        assert in_document == (SERVICE_NAME.problem(name) is None), name
    assert all(SERVICE_NAME.problem(name) is None for name in SERVICE_NAMES)
    assert not any(SERVICE_NAME.problem(name) is None for name in NOT_SERVICE_NAMES)


def test_burrow_producers_reply_queue_names_are_the_documents(document):
    """The reply queue a burrow producer declares, per type and with "auto" for one node and for
    several, is the one the document's ``replyQueue`` parameter names."""
    rule = document["components"]["parameters"]["replyQueue"]["x-burrow-reply-queues"]
    topology = TopologyConfig()
    one, several = RabbitMQConfig(host="h1"), RabbitMQConfig(hosts=("h1", "h2", "h3"))
    for queue_type in ("classic", "quorum"):
        made = reply_queue_name(dataclasses.replace(topology, reply_queue_type=queue_type), "billing-1")
        assert made == rule[queue_type].format(prefix=topology.reply_queue_prefix, instanceId="billing-1")
        assert made in document["components"]["parameters"]["replyQueue"]["examples"]
    auto = dataclasses.replace(topology, reply_queue_type="auto")
    assert reply_queue_name(auto, "p", one) == rule[rule["auto"]["oneNode"]].format(prefix=topology.reply_queue_prefix,
                                                                                   instanceId="p")
    assert reply_queue_name(auto, "p", several) == rule[rule["auto"]["severalNodes"]].format(
        prefix=topology.reply_queue_prefix, instanceId="p")
