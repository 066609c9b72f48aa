"""AckBatcher: which acks cover a batch of finished requests when handlers finish out of order."""

from __future__ import annotations

from burrow.amqp.acks import AckBatcher, AckPlan


def batcher_with(*tags: int) -> AckBatcher:
    batcher = AckBatcher()
    for tag in tags:
        batcher.received(tag)
    return batcher


def test_everything_settled_is_one_multiple_ack() -> None:
    batcher = batcher_with(1, 2, 3)
    assert batcher.settle([3, 1, 2]) == AckPlan(multiple=3)
    assert len(batcher) == 0


def test_tags_below_the_oldest_unsettled_share_one_ack_and_those_above_go_singly() -> None:
    batcher = batcher_with(1, 2, 3, 4, 5)
    assert batcher.settle([1, 2, 4]) == AckPlan(multiple=2, single=[4])
    assert len(batcher) == 2  # 3 and 5 still with their workers


def test_a_batch_entirely_above_the_oldest_unsettled_is_acked_tag_by_tag() -> None:
    batcher = batcher_with(1, 2, 3)
    assert batcher.settle([2, 3]) == AckPlan(single=[2, 3])
    # Once 1 finishes, one multiple ack covers it (2 and 3 were acked already).
    assert batcher.settle([1]) == AckPlan(multiple=1)


def test_a_rejected_tag_no_longer_holds_back_the_multiple_ack() -> None:
    batcher = batcher_with(1, 2, 3)
    batcher.rejected(1)
    assert batcher.settle([2, 3]) == AckPlan(multiple=3)


def test_reset_forgets_the_old_channels_tags() -> None:
    batcher = batcher_with(7, 8)
    batcher.reset()
    batcher.received(1)
    assert batcher.settle([1]) == AckPlan(multiple=1)


def test_an_empty_batch_acks_nothing() -> None:
    assert batcher_with(1).settle([]) == AckPlan()
