"""``consumer.window = "adaptive"``: the window grows while the replies' confirm latency stays flat,
shrinks when it rises, and stays within 1 and 16 requests per worker."""

from __future__ import annotations

from burrow.amqp.window import ADAPT_EVERY, MIN_SAMPLES, AdaptiveWindow


class Run:
    """An adaptive window for 8 workers, fed one period of equal latencies at a time."""

    def __init__(self, start: int = 32) -> None:
        self.window = AdaptiveWindow(start, lambda: 8)
        self.now = 0.0
        self.window.decide(self.now)

    def period(self, latency_ms: float, held: int | None = None) -> int:
        for _ in range(MIN_SAMPLES):
            self.window.observe(latency_ms / 1000, self.window.size if held is None else held)
        self.now += ADAPT_EVERY
        self.window.decide(self.now)
        return self.window.size


def test_it_grows_one_request_per_worker_while_the_latency_stays_flat_up_to_16_per_worker() -> None:
    run = Run()
    assert [run.period(2.0) for _ in range(3)] == [40, 48, 56]
    assert [run.period(2.0) for _ in range(20)][-1] == 128


def test_it_shrinks_by_a_quarter_when_the_latency_rises_down_to_1_per_worker() -> None:
    run = Run()
    assert run.period(2.0) == 40
    assert run.period(10.0) == 30
    assert [run.period(10.0) for _ in range(10)][-1] == 8


def test_it_does_not_grow_a_window_the_consumer_does_not_fill() -> None:
    run = Run()
    assert [run.period(2.0, held=10) for _ in range(5)] == [32] * 5


def test_it_waits_for_enough_replies_before_it_moves() -> None:
    run = Run()
    assert run.period(2.0) == 40
    run.window.observe(0.0001, 40)
    run.now += ADAPT_EVERY
    assert run.window.decide(run.now) is None and run.window.size == 40
