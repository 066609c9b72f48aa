"""burrow.daemon.bridge: thread-resolved futures handed to the API's event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from burrow.daemon.bridge import FutureBridge


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_a_burst_settled_by_another_thread_wakes_the_loop_once(loop: asyncio.AbstractEventLoop,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    wakes: list[Any] = []
    wake = loop.call_soon_threadsafe
    monkeypatch.setattr(loop, "call_soon_threadsafe", lambda *args: (wakes.append(args), wake(*args)))
    bridge = FutureBridge(loop)
    futures: list[concurrent.futures.Future[bytes]] = [concurrent.futures.Future() for _ in range(50)]

    async def main() -> list[Any]:
        waiters = [bridge.wrap(future, loop.time() + 30) for future in futures]
        settle = threading.Thread(target=lambda: [f.set_result(b"%d" % n) for n, f in enumerate(futures[:-1])]
                                  + [futures[-1].set_exception(ValueError("no"))])
        settle.start()
        settle.join()
        return await asyncio.gather(*waiters, return_exceptions=True)

    results = loop.run_until_complete(main())
    assert results[:-1] == [b"%d" % n for n in range(49)] and isinstance(results[-1], ValueError)
    assert len(wakes) == 1


def test_the_give_up_timer_fails_the_waiter_or_is_cancelled_with_the_outcome(loop: asyncio.AbstractEventLoop,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    timers: list[asyncio.TimerHandle] = []
    call_at = loop.call_at
    monkeypatch.setattr(loop, "call_at", lambda *args: timers.append(call_at(*args)) or timers[-1])
    bridge = FutureBridge(loop)
    never: concurrent.futures.Future[bytes] = concurrent.futures.Future()
    answered: concurrent.futures.Future[bytes] = concurrent.futures.Future()

    async def main() -> tuple[Any, Any]:
        late = bridge.wrap(never, loop.time() + 0.05)
        soon = bridge.wrap(answered, loop.time() + 30)
        answered.set_result(b"reply")
        return await asyncio.gather(late, soon, return_exceptions=True)

    late, soon = loop.run_until_complete(main())
    assert isinstance(late, TimeoutError) and soon == b"reply"
    assert timers[1].cancelled(), "the answered request's give-up timer is still armed"
