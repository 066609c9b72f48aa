"""AMQP plumbing shared by the producer and the consumer: connection parameters and lifecycle."""

from burrow.amqp.setup import RabbitMQSetup, call_every, connection_parameters

__all__ = ["RabbitMQSetup", "call_every", "connection_parameters"]
