"""Named services: what a consumer daemon serves and where a producer sends each request.

A service is a name, a handler and its limits (:class:`~burrow.config.schema.ServiceConfig`, one
``[consumer.services.<name>]`` table). Each has its own durable request queue bound to the
request exchange under the service's name: ``<topology.request_queue>.<name>`` with routing key
``<name>``. The *default* service is the one burrow always had: the queue ``topology.request_queue``
bound under its own name, reached with ``service=None``, so a deployment of an earlier release
keeps its queue, its bindings and its requests. A consumer whose file has no service table serves
the default service alone with ``[consumer] handler``; one with service tables serves exactly
those, the default service among them when one is named ``default``.

Names are at most 64 lowercase letters, digits, ``-`` and ``_``, starting with a letter or digit
(:data:`~burrow.config.schema.SERVICE_NAME` says why).
"""

from __future__ import annotations

import argparse

from burrow.config.schema import SERVICE_NAME, ConsumerConfig, ServiceConfig

#: The name of the service on ``topology.request_queue`` (``service=None`` on the producer).
DEFAULT_SERVICE = "default"


def check_name(name: str) -> str:
    """Return ``name`` if it can name a service; else raise ``ValueError`` saying why."""
    problem = SERVICE_NAME.problem(name)
    if problem:
        raise ValueError(f"service name {problem}")
    return name


def queue_name(request_queue: str, service: str | None) -> str:
    """The request queue of ``service`` (``None`` or ``"default"``: ``request_queue`` itself)."""
    if service is None or service == DEFAULT_SERVICE:
        return request_queue
    return f"{request_queue}.{service}"


def routing_key(request_queue: str, service: str | None) -> str:
    """The routing key that reaches ``service``'s queue through the request exchange."""
    if service is None or service == DEFAULT_SERVICE:
        return request_queue
    return service


def service_of_queue(request_queue: str, queue: str) -> str | None:
    """The service whose request queue is ``queue`` (a dead letter's first death queue), or None."""
    if queue == request_queue:
        return DEFAULT_SERVICE
    prefix = f"{request_queue}."
    name = queue[len(prefix):] if queue.startswith(prefix) else ""
    return name if name and SERVICE_NAME.problem(name) is None else None


def http_target(service: str | None) -> str:
    """The producer API's path for requests to ``service``: ``/v1/requests`` for the default one."""
    if service is None or service == DEFAULT_SERVICE:
        return "/v1/requests"
    return f"/v1/services/{service}"


def service_argument(text: str) -> str:
    """argparse type of ``--service NAME``: a valid service name."""
    try:
        return check_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def handler_key(consumer: ConsumerConfig, service: str) -> str:
    """The configuration key that names ``service``'s handler, for error messages."""
    return f"consumer.services.{service}.handler" if consumer.services else "consumer.handler"


def served(consumer: ConsumerConfig) -> tuple[tuple[str, ServiceConfig], ...]:
    """``(name, settings)`` of every service a consumer with settings ``consumer`` serves."""
    if consumer.services:
        return tuple(consumer.services.items())
    return ((DEFAULT_SERVICE, ServiceConfig(handler=consumer.handler)),)
