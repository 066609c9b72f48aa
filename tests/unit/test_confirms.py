"""ConfirmTracker against the broker's confirm numbering: single and ``multiple`` acks and nacks,
gaps, tags confirmed twice, and the resend after a channel loss (tags restart at 1)."""

from __future__ import annotations

from burrow.amqp.confirms import ConfirmTracker


def tracker_with(*messages: str) -> ConfirmTracker[str]:
    tracker: ConfirmTracker[str] = ConfirmTracker()
    for message in messages:
        tracker.published(message)
    return tracker


def test_tags_count_from_one_in_publish_order() -> None:
    tracker: ConfirmTracker[str] = ConfirmTracker()
    assert [tracker.published(m) for m in "abc"] == [1, 2, 3]
    assert tracker.pending() == ["a", "b", "c"] and len(tracker) == 3


def test_single_confirm_removes_only_its_tag() -> None:
    tracker = tracker_with("a", "b", "c")
    assert tracker.confirmed(2, multiple=False) == ["b"]
    assert tracker.pending() == ["a", "c"]


def test_multiple_covers_every_tag_up_to_it_and_none_above() -> None:
    tracker = tracker_with("a", "b", "c", "d")
    assert tracker.confirmed(3, multiple=True) == ["a", "b", "c"]
    assert tracker.pending() == ["d"]


def test_multiple_ack_covers_a_gap_left_by_an_earlier_single_confirm() -> None:
    tracker = tracker_with("a", "b", "c", "d", "e")
    assert tracker.confirmed(2, multiple=False) == ["b"]
    assert tracker.confirmed(4, multiple=True) == ["a", "c", "d"]
    assert tracker.pending() == ["e"]


def test_nack_multiple_hands_back_the_same_messages_as_an_ack_would() -> None:
    # The tracker does not care whether the frame was an ack or a nack: the owner does.
    tracker = tracker_with("a", "b", "c")
    assert tracker.confirmed(2, multiple=True) == ["a", "b"]
    assert tracker.confirmed(3, multiple=True) == ["c"]
    assert len(tracker) == 0


def test_a_tag_already_removed_covers_nothing() -> None:
    tracker = tracker_with("a", "b")
    assert tracker.confirmed(1, multiple=False) == ["a"]
    assert tracker.confirmed(1, multiple=False) == []
    assert tracker.confirmed(1, multiple=True) == []
    assert tracker.pending() == ["b"]


def test_peek_shows_what_a_confirm_covers_without_removing_it() -> None:
    tracker = tracker_with("a", "b", "c")
    assert tracker.peek(2, multiple=True) == ["a", "b"]
    assert tracker.pending() == ["a", "b", "c"]


def test_reset_returns_the_unconfirmed_for_resending_and_restarts_tags() -> None:
    tracker = tracker_with("a", "b", "c")
    tracker.confirmed(1, multiple=False)
    assert tracker.reset() == ["b", "c"]
    assert len(tracker) == 0
    assert tracker.published("b") == 1  # the new channel numbers its publishes from 1 again


def test_confirm_after_a_channel_reset_only_covers_the_new_channels_tags() -> None:
    tracker = tracker_with("a", "b", "c")
    resend = tracker.reset()
    for message in resend:
        tracker.published(message)
    tracker.published("d")
    # A late "multiple up to 2" now means the new channel's tags 1 and 2: the resent a and b.
    assert tracker.confirmed(2, multiple=True) == ["a", "b"]
    assert tracker.pending() == ["c", "d"]
    # The old channel's tag 7 never existed on this channel: it covers nothing.
    assert tracker.confirmed(7, multiple=False) == []
