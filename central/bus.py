"""In-process broadcaster of state changes: ingest publishes, SSE streams subscribe."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class BusEvent:
    """One change, as sent to SSE clients: ``kind`` becomes the SSE event name, ``data`` its JSON."""

    kind: str
    data: dict[str, Any]


@dataclass(eq=False)
class _Subscriber:
    queue: asyncio.Queue[BusEvent]
    dropped: int = 0
    overflowed: bool = False


@dataclass
class Bus:
    """Fan-out with a bounded queue per subscriber: a slow client loses its stream, never slows ingest."""

    queue_size: int = 1000
    _subs: set[_Subscriber] = field(default_factory=set)

    @property
    def subscribers(self) -> int:
        """How many streams are listening."""
        return len(self._subs)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send a change to every subscriber (never blocks)."""
        event = BusEvent(kind, data)
        for sub in list(self._subs):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.overflowed = True

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[BusEvent]]:
        """Context manager yielding an async iterator of events; it ends if the subscriber falls behind."""
        sub = _Subscriber(asyncio.Queue(self.queue_size))
        self._subs.add(sub)

        async def events() -> AsyncIterator[BusEvent]:
            while not sub.overflowed:
                yield await sub.queue.get()
            log.warning("bus.subscriber_overflow", queue_size=self.queue_size)

        try:
            yield events()
        finally:
            self._subs.discard(sub)
