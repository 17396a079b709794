"""varta.aio: waiting with a time limit never swallows a cancellation (Python 3.11's asyncio.wait_for can)."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import pytest

from varta.aio import wait_event, wait_for


async def _loop_until_cancelled(event: asyncio.Event, waits: list[int], use_stdlib: bool) -> None:
    while True:  # the shape of every receive loop: wait a little, handle what came, wait again
        if use_stdlib:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 5)
        else:
            await wait_event(event, 5)
        waits.append(1)
        event.clear()
        if len(waits) > 3:
            return  # the cancellation was lost: the loop went on


async def _cancel_as_the_event_fires(use_stdlib: bool) -> tuple[bool, list[int]]:
    event = asyncio.Event()
    waits: list[int] = []
    task = asyncio.create_task(_loop_until_cancelled(event, waits, use_stdlib))
    await asyncio.sleep(0.01)
    for _ in range(4):
        event.set()  # a message arrives ...
        task.cancel()  # ... in the same loop iteration as the shutdown
        await asyncio.sleep(0.01)
        if task.done():
            break
    try:
        await task
    except asyncio.CancelledError:
        return True, waits
    return False, waits


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the stdlib race was fixed in 3.12")
async def test_the_stdlib_wait_for_of_3_11_loses_a_cancellation_that_meets_a_result() -> None:
    cancelled, waits = await _cancel_as_the_event_fires(use_stdlib=True)
    assert not cancelled and len(waits) > 1  # the reason varta.aio exists


async def test_wait_event_lets_a_cancellation_through_even_when_the_event_fires_at_once() -> None:
    cancelled, waits = await _cancel_as_the_event_fires(use_stdlib=False)
    assert cancelled and waits == []


async def test_wait_event_reports_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True
    assert await wait_event(event, 0) is True  # already set: no wait


async def test_wait_for_returns_the_result_or_raises_timeout_error() -> None:
    async def answer(delay: float) -> int:
        await asyncio.sleep(delay)
        return 42

    assert await wait_for(answer(0), 5) == 42
    assert await wait_for(answer(0), None) == 42
    with pytest.raises(TimeoutError):
        await wait_for(answer(5), 0.01)
