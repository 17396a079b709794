"""Keep a long-running asyncio loop alive: restart it with back-off when it fails or returns."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Final

import structlog

from varta.aio import wait_for

log = structlog.get_logger(__name__)

RESTART_MIN_S: Final = 1.0
RESTART_MAX_S: Final = 30.0


async def supervise(name: str, loop: Callable[[], Awaitable[None]], stop: asyncio.Event | None = None) -> None:
    """Run *loop*, restarting it with back-off when it fails or returns, until *stop* is set (or cancelled)."""
    stop = stop or asyncio.Event()
    delay = RESTART_MIN_S
    while not stop.is_set():
        started = time.monotonic()
        try:
            await loop()
            if stop.is_set():
                return
            log.warning("task.exited", task=name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task.crashed", task=name, restart_in_s=delay)
        if time.monotonic() - started > RESTART_MAX_S:
            delay = RESTART_MIN_S  # it ran fine for a while: start the back-off afresh
        with contextlib.suppress(TimeoutError):
            await wait_for(stop.wait(), delay)
        delay = min(delay * 2, RESTART_MAX_S)
