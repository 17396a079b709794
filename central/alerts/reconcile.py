"""Bring the stored alert periods of one source in line with what its feed says now.

Restart-safe and idempotent: the stored open periods are the baseline, so the first poll after a start ends
whatever ended meanwhile and opens what began. Several central instances may reconcile the same source: a
PostgreSQL transaction-level advisory lock per source serialises them (on SQLite the write lock is taken first), and the
``(source, source_id)`` unique constraint with ``ON CONFLICT DO NOTHING`` keeps a period from being stored twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from central.alerts.feed import FeedAlert, FeedDocument
from central.store.alert_models import AlertPeriod

#: An unchanged open period has its ``updated_at`` rewritten at most this often.
TOUCH_EVERY: Final = timedelta(minutes=5)
#: A start this far in the future is a scheduled alert (CAP ``onset``): not open yet. Less is clock skew.
FUTURE_TOLERANCE: Final = timedelta(minutes=5)
_CHUNK: Final = 500


@dataclass
class Reconciled:
    """What one reconcile changed (rows are detached copies, safe to read after the session closed)."""

    opened: list[AlertPeriod] = field(default_factory=list)
    closed: list[AlertPeriod] = field(default_factory=list)
    reopened: list[AlertPeriod] = field(default_factory=list)
    pending: int = 0  # listed with a start still in the future
    active: int = 0  # open periods of the source afterwards

    @property
    def changed(self) -> bool:
        """True when a period opened, closed or reopened."""
        return bool(self.opened or self.closed or self.reopened)


def lock_key(source: str) -> int:
    """The advisory-lock key of *source* (a signed 64-bit number derived from its name)."""
    digest = hashlib.sha256(f"varta.alerts:{source}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _insert(dialect: str, values: dict[str, Any]) -> Any:
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(AlertPeriod).values(**values).on_conflict_do_nothing(index_elements=["source", "source_id"])


def _refresh(row: AlertPeriod, alert: FeedAlert) -> bool:
    """Copy the descriptive fields the feed may correct; True when something changed."""
    changed = False
    for name in ("region_name", "region_type", "oblast_uid", "alert_type"):
        value = getattr(alert, name)
        if name in ("region_name", "region_type") and not value:
            continue
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


async def _rows(session: AsyncSession, source: str, ids: Iterable[str]) -> dict[str, AlertPeriod]:
    wanted = list(ids)
    found: dict[str, AlertPeriod] = {}
    for i in range(0, len(wanted), _CHUNK):
        rows = await session.scalars(
            select(AlertPeriod).where(AlertPeriod.source == source, AlertPeriod.source_id.in_(wanted[i : i + _CHUNK]))
        )
        found.update({r.source_id: r for r in rows})
    return found


async def reconcile(
    session: AsyncSession, source: str, document: FeedDocument, now: datetime, *, dialect: str
) -> Reconciled:
    """Apply *document* (read at *now*) to the stored periods of *source*; the caller commits."""
    if dialect == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(source)})
    elif dialect == "sqlite":
        # Take SQLite's write lock before reading (a write that matches nothing), so a second process waits here
        # instead of failing later when it would upgrade a stale read snapshot to a write.
        await session.execute(text("UPDATE alert_periods SET updated_at = updated_at WHERE id = -1"))
    result = Reconciled()
    open_rows = {
        r.source_id: r
        for r in await session.scalars(
            select(AlertPeriod).where(AlertPeriod.source == source, AlertPeriod.ended_at.is_(None))
        )
    }
    listed: set[str] = set()
    new: list[FeedAlert] = []
    for alert in document.alerts:
        listed.add(alert.source_id)
        if alert.started_at > now + FUTURE_TOLERANCE:
            result.pending += 1
            continue
        end = alert.end_at(now)
        row = open_rows.get(alert.source_id)
        if row is None:
            new.append(alert)
            continue
        changed = _refresh(row, alert)
        if end is not None:
            row.ended_at = max(end, row.started_at)
            row.updated_at = now
            result.closed.append(row)
        elif changed or now - row.updated_at >= TOUCH_EVERY:
            row.updated_at = now

    if new:
        stored = await _rows(session, source, (a.source_id for a in new))
        inserted: list[str] = []
        for alert in new:
            end = alert.end_at(now)
            row = stored.get(alert.source_id)
            if row is None:
                started = min(alert.started_at, now)
                outcome = await session.execute(
                    _insert(
                        dialect,
                        {
                            "source": source,
                            "source_id": alert.source_id,
                            "region_uid": alert.region_uid,
                            "region_name": alert.region_name,
                            "region_type": alert.region_type,
                            "oblast_uid": alert.oblast_uid,
                            "alert_type": alert.alert_type,
                            "started_at": started,
                            "ended_at": None if end is None else max(end, started),
                            "updated_at": now,
                        },
                    )
                )
                if getattr(outcome, "rowcount", 0) == 1 and end is None:
                    inserted.append(alert.source_id)
            elif row.ended_at is not None and end is None:
                # Closed before (it had left the feed), listed as active again: the same alert goes on.
                _refresh(row, alert)
                row.ended_at = None
                row.updated_at = now
                result.reopened.append(row)
        if inserted:
            result.opened.extend((await _rows(session, source, inserted)).values())

    for key, when in document.ended_keys.items():
        prefix = key + "#"
        for source_id, row in open_rows.items():
            if source_id.startswith(prefix) and row.ended_at is None:
                row.ended_at = max(when, row.started_at)
                row.updated_at = now
                result.closed.append(row)

    if document.complete:
        for source_id, row in open_rows.items():
            if row.ended_at is None and source_id not in listed and source_id not in document.unreadable_ids:
                row.ended_at = max(now, row.started_at)
                row.updated_at = now
                result.closed.append(row)

    await session.flush()
    still_open = sum(1 for r in open_rows.values() if r.ended_at is None)
    result.active = still_open + len(result.opened) + len(result.reopened)
    result.opened.sort(key=lambda r: (r.started_at, r.id))
    return result


async def close_orphans(session: AsyncSession, sources: Iterable[str], now: datetime) -> list[AlertPeriod]:
    """End the open periods of sources no longer configured (nobody would ever end them); the caller commits."""
    names = list(sources)
    query = select(AlertPeriod).where(AlertPeriod.ended_at.is_(None))
    if names:
        query = query.where(AlertPeriod.source.not_in(names))
    closed = list(await session.scalars(query))
    for row in closed:
        row.ended_at = max(now, row.started_at)
        row.updated_at = now
    await session.flush()
    return closed
