"""Which reply queues a producer drains (burrow.amqp.replydrain.ReplyQueues), without a broker."""

from __future__ import annotations

from typing import Any, Callable

from burrow.amqp.replydrain import ReplyQueues
from burrow.config import parse_config


class FakeConnection:
    """Records the channels asked for; each drain opens one of its own."""

    def __init__(self) -> None:
        self.opened: list[Callable[[Any], None]] = []
        self.is_open = True

    def channel(self, on_open_callback: Callable[[Any], None]) -> None:
        self.opened.append(on_open_callback)


class FakeChannel:
    def __init__(self) -> None:
        self.declared: list[str] = []
        self.is_open = True

    def add_on_close_callback(self, _callback: Callable[..., None]) -> None:
        pass

    def queue_declare(self, queue: str, passive: bool, callback: Callable[[Any], None]) -> None:
        assert passive, "a drain only asks whether a queue is there"
        self.declared.append(queue)


def drained(queues: ReplyQueues) -> list[str]:
    """The queues the drains started on one fresh connection ask for."""
    connection = FakeConnection()
    queues.on_ready(connection)  # type: ignore[arg-type]
    names = []
    for on_open in connection.opened:
        channel = FakeChannel()
        on_open(channel)
        names += channel.declared
    return names


def reply_queues(rabbitmq: dict[str, Any] | None = None, **producer: Any) -> ReplyQueues:
    config = parse_config({"rabbitmq": rabbitmq or {}, "producer": {"instance_id": "p1", **producer}})
    return ReplyQueues(config, "p1", ioloop=None, on_reply=lambda *_: None, is_pending=lambda _cid: False)  # type: ignore[arg-type]


def test_a_fresh_producer_drains_every_other_queue_of_its_instance_an_earlier_release_may_have_left() -> None:
    queues = reply_queues()
    assert (queues.type, queues.name) == ("classic", "burrow.replies.p1.classic")
    assert drained(queues) == ["burrow.replies.p1", "burrow.replies.p1.quorum"]


def test_on_a_cluster_the_classic_queues_are_drained() -> None:
    queues = reply_queues({"hosts": ["b1", "b2", "b3"]})
    assert queues.name == "burrow.replies.p1.quorum"
    assert drained(queues) == ["burrow.replies.p1", "burrow.replies.p1.classic"]


def test_a_queue_found_gone_is_not_asked_for_again_until_a_switch_uses_it() -> None:
    queues = reply_queues()
    drained(queues)
    for drain in list(queues._drains):
        drain._finish()  # what a 404 on its passive declare does
    assert drained(queues) == []
    config = parse_config({"rabbitmq": {"hosts": ["b1", "b2", "b3"]}})
    queues.switch(config.rabbitmq, ["c-1"])
    assert queues.name == "burrow.replies.p1.quorum"
    assert drained(queues) == ["burrow.replies.p1.classic"]


def test_direct_reply_to_drains_nothing() -> None:
    assert drained(reply_queues(reply_mode="direct")) == []
