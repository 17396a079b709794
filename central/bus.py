"""In-process broadcaster of state changes: ingest publishes, SSE streams subscribe."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
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


Watcher = Callable[[str], None]
"""Told the kind of every change (``node``, ``device``, …) and nothing more: cheap, synchronous, must not block."""


@dataclass
class Bus:
    """Fan-out with a bounded queue per subscriber: a slow client loses its stream, never slows ingest.

    *Watchers* (the incident engine) only need to know THAT something of a kind changed: they are told the kind by
    :meth:`touch` even when no stream is listening, so publishers can skip building the payloads then.
    """

    queue_size: int = 1000
    _subs: set[_Subscriber] = field(default_factory=set)
    _watchers: list[Watcher] = field(default_factory=list)

    @property
    def subscribers(self) -> int:
        """How many streams are listening (publishers may skip building payloads when none is)."""
        return len(self._subs)

    def watch(self, watcher: Watcher) -> None:
        """Call *watcher* with the kind of every change from now on."""
        self._watchers.append(watcher)

    def touch(self, kind: str) -> None:
        """Tell the watchers that something of *kind* changed (what :meth:`publish` also does)."""
        for watcher in self._watchers:
            try:
                watcher(kind)
            except Exception:  # a watcher's bug must never reach the publisher (ingest)
                log.exception("bus.watcher_failed", kind=kind)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send a change to every subscriber and watcher (never blocks)."""
        self.touch(kind)
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
