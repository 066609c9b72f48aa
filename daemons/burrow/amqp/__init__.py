"""AMQP plumbing shared by the producer and the consumer: connection parameters and lifecycle."""

from burrow.amqp.confirms import ConfirmTracker
from burrow.amqp.inbox import Inbox
from burrow.amqp.iothread import IOThread, call_every
from burrow.amqp.parameters import connection_parameters
from burrow.amqp.setup import RabbitMQSetup

__all__ = ["ConfirmTracker", "IOThread", "Inbox", "RabbitMQSetup", "call_every", "connection_parameters"]
