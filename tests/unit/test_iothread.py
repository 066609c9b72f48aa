"""IOThread and Inbox on a real pika IOLoop (no broker): work from other threads reaches the I/O
thread, a burst costs one wake-up, periodic timers run until cancelled, and stop ends the thread."""

from __future__ import annotations

import threading
from typing import Callable

from burrow.amqp.inbox import Inbox
from burrow.amqp.iothread import IOThread


def started(name: str = "test-io") -> IOThread:
    io = IOThread(name)
    running = threading.Event()
    io.start(running.set)
    assert running.wait(5), "the start step never ran on the I/O thread"
    return io


def on_io_thread(io: IOThread, fn: Callable[[], object]) -> object:
    """Run ``fn`` on the I/O thread and return its result (waits at most 5 s)."""
    done = threading.Event()
    result: list[object] = []
    io.call_soon(lambda: (result.append(fn()), done.set()))
    assert done.wait(5), "the I/O thread did not run the callback"
    return result[0]


def stop(io: IOThread) -> None:
    io.call_soon(io.stop)
    io.join(5)
    assert not io.is_alive()


def test_start_step_and_callbacks_run_on_the_io_thread() -> None:
    io = started("burrow-test-io")
    try:
        assert on_io_thread(io, lambda: threading.current_thread().name) == "burrow-test-io"
    finally:
        stop(io)


def test_periodic_timer_runs_repeatedly_and_not_after_cancel() -> None:
    io = started()
    ticks: list[int] = []
    three = threading.Event()

    def tick() -> None:
        ticks.append(1)
        if len(ticks) >= 3:
            three.set()

    try:
        io.call_every(0.01, tick)
        assert three.wait(5), "the periodic timer did not run three times"
        count = on_io_thread(io, lambda: (io.cancel_timers(), len(ticks))[1])
        # Two more loop turns after the cancel: no tick ran in between.
        on_io_thread(io, lambda: None)
        assert on_io_thread(io, lambda: len(ticks)) == count
    finally:
        stop(io)


class RecordingSetup:
    """Stands in for RabbitMQSetup.stop: reports closed when the test says so."""

    def __init__(self) -> None:
        self.on_stopped: Callable[[], None] | None = None

    def stop(self, on_stopped: Callable[[], None]) -> None:
        self.on_stopped = on_stopped


def test_stop_after_leaves_the_loop_only_once_every_connection_closed() -> None:
    io = started()
    first, second = RecordingSetup(), RecordingSetup()
    on_io_thread(io, lambda: io.stop_after([first, second]))
    assert first.on_stopped is not None and second.on_stopped is not None
    io.call_soon(first.on_stopped)
    assert on_io_thread(io, lambda: "still running") == "still running"
    io.call_soon(second.on_stopped)
    io.join(5)
    assert not io.is_alive()


def test_inbox_burst_from_many_threads_costs_one_wake_up_and_loses_nothing() -> None:
    io = IOThread("test-io")
    taken: list[int] = []
    wakes: list[int] = []
    done = threading.Event()

    def on_wake() -> None:
        wakes.append(len(inbox))
        while inbox:
            taken.append(inbox.pop())
        if len(taken) == 400:
            done.set()

    inbox: Inbox[int] = Inbox(io.ioloop, on_wake)
    # Before the loop runs, every put of the burst finds a wake-up already pending.
    threads = [threading.Thread(target=lambda n=n: [inbox.put(n * 100 + i) for i in range(100)]) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    io.start(lambda: None)
    try:
        assert done.wait(5)
        assert sorted(taken) == list(range(400))
        assert wakes == [400]
        # The flag was cleared before on_wake ran: a later put wakes the loop again.
        inbox.put(400)
        on_io_thread(io, lambda: None)
        assert taken[-1] == 400 and len(wakes) == 2
    finally:
        stop(io)


def test_inbox_put_back_goes_ahead_in_order() -> None:
    io = IOThread("test-io")
    inbox: Inbox[str] = Inbox(io.ioloop, lambda: None)
    inbox.put("c")
    inbox.put_back(["a", "b"])
    assert list(inbox) == ["a", "b", "c"] and len(inbox) == 3
    assert [inbox.pop() for _ in range(3)] == ["a", "b", "c"]
    io.ioloop.close()
