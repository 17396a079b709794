"""asyncio helpers that behave the same on every supported Python.

Python 3.11's :func:`asyncio.wait_for` loses a cancellation that arrives in the same loop iteration as the awaited
result (CPython gh-86296, fixed in 3.12): a ``while True`` loop around it then never stops, and whoever awaits the
cancelled task waits forever. :func:`wait_for` here is built on :func:`asyncio.timeout`, which tells its own timeout
apart from a cancellation coming from outside and always lets the latter through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["wait_event", "wait_for"]


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:
    """Await *awaitable* for at most *timeout* seconds (``None``: no limit); raises :class:`TimeoutError`."""
    async with asyncio.timeout(timeout):
        return await awaitable


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until *event* is set or *timeout* passes; True when it was set. Cancellation always propagates."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
