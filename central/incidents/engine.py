"""The incident engine: load the stored state, apply the rules, write the difference, announce it.

It runs as its own task (never in the ingest's way): every ``incidents.evaluate_interval_s`` and soon after a
relevant bus event (``node``, ``device``, ``event``, ``alert``; bursts coalesced). Each evaluation first reads
and diffs without writing; only when something changed does it take the writer's lock (PostgreSQL:
``pg_try_advisory_xact_lock``, so of several central instances one writes and the others skip; SQLite: the
database's write lock) and re-derive and apply the changes in ONE short transaction, together with the
notification rows they queue. Each opened / updated / closed incident is published on the bus (``incident``,
:func:`central.incidents.queries.incident_view`) after the commit.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, Literal

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from central.bus import Bus
from central.config import CentralConfig
from central.incidents import rules
from central.incidents.plan import Changes, diff
from central.incidents.queries import incident_view
from central.incidents.snapshot import Loaded, load
from central.notify.queue import queue_notifications
from central.store.db import Database
from central.store.incident_models import Incident, Outage
from varta.aio import wait_event
from varta.contract import utcnow

log = structlog.get_logger(__name__)

#: Bus events after which the rules are evaluated again (besides the timer).
TRIGGERS: Final = frozenset({"node", "device", "event", "alert"})
#: PostgreSQL advisory lock id of the incident writer ("varta-incidents").
ADVISORY_LOCK_ID: Final = 0x7661727461_0001
#: Short pause after a bus event before evaluating, so a burst is one evaluation.
COALESCE_S: Final = 0.05
#: Evaluations are at least this far apart, however many events arrive.
MIN_GAP_S: Final = 0.25
ERROR_BACKOFF_MAX_S: Final = 30.0

Announcement = tuple[Incident, Literal["opened", "updated", "closed"]]


class IncidentEngine:
    """Opens, updates and closes incidents and outages from the stored state (see :mod:`central.incidents.rules`).

    ``await evaluate_now(now=...)`` runs one evaluation (tests and the end-to-end suite drive it directly);
    ``run()`` is the long-running loop. ``on_notifications`` is called after a commit that queued notification
    rows (the notification sender's ``wake``).
    """

    def __init__(
        self,
        config: CentralConfig,
        db: Database,
        bus: Bus,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_notifications: Callable[[], None] | None = None,
        alerts_known_until: Callable[[], datetime | None] | None = None,
    ) -> None:
        self.config = config
        self.alerts_known_until = alerts_known_until
        """Until when the alert feeds are known to have been read (``AlertService.known_until``); None: now."""
        self.settings = config.incidents
        self.db = db
        self.bus = bus
        self.clock = clock
        self.on_notifications = on_notifications
        self.language = config.default_language
        self._wake = asyncio.Event()
        bus.watch(self._on_change)  # told the kind of every change, even when no dashboard is streaming
        self.evaluations = 0
        self.writes = 0
        self.skipped_locked = 0
        self.errors = 0
        self.bad_siren_events = 0
        self.opened: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self.last_error = ""
        self.last_evaluated_at: datetime | None = None

    # ------------------------------------------------------------------------------------------ public

    def wake(self) -> None:
        """Ask for an evaluation soon (coalesced)."""
        self._wake.set()

    def stats(self) -> dict[str, Any]:
        """Counters: evaluations, writes, skips (another instance held the lock), errors, opened/closed by type;
        ``bad_siren_events``: unreadable ``siren.state_changed`` events in the history the last evaluation read."""
        return {
            "evaluations": self.evaluations,
            "writes": self.writes,
            "skipped_locked": self.skipped_locked,
            "errors": self.errors,
            "last_error": self.last_error,
            "bad_siren_events": self.bad_siren_events,
            "opened": dict(self.opened),
            "closed": dict(self.closed),
            "last_evaluated_at": self.last_evaluated_at.isoformat() if self.last_evaluated_at else None,
        }

    async def evaluate_now(self, now: datetime | None = None) -> Changes:
        """One evaluation as of *now* (default: the clock); returns what it wrote (empty: nothing changed)."""
        now = now or self.clock()
        self.evaluations += 1
        self.last_evaluated_at = now
        async with self.db.session() as session:
            loaded, changes = await self._derive(session, now)
            await session.rollback()  # read-only pass: end the read transaction at once
        if loaded.bad_siren_events != self.bad_siren_events:
            log.warning("incidents.bad_siren_events", count=loaded.bad_siren_events)
        self.bad_siren_events = loaded.bad_siren_events  # stored events whose data is unreadable (skipped)
        if not changes:
            return changes
        async with self.db.session() as session:
            if not await self._lock(session):
                self.skipped_locked += 1
                await session.rollback()
                log.debug("incidents.skipped_locked")
                return Changes()
            loaded, changes = await self._derive(session, now)
            announcements: list[Announcement] = []
            queued = 0
            if changes:
                announcements, queued = await self._apply(session, loaded, changes, now)
            await session.commit()
        if changes:
            self.writes += 1
            log.info("incidents.evaluated", **changes.summary())
        for row, transition in announcements:
            if transition == "opened":
                self.opened[row.type] += 1
                log.warning("incident.opened", id=row.id, key=row.key, type=row.type, site=row.site)
            elif transition == "closed":
                self.closed[row.type] += 1
                log.info("incident.closed", id=row.id, key=row.key, type=row.type, reason=row.end_reason)
            self.bus.publish("incident", incident_view(row))
        if queued and self.on_notifications is not None:
            self.on_notifications()
        return changes

    async def run(self) -> None:
        """Evaluate on the timer and after relevant bus events, until cancelled; survives any error."""
        failures = 0
        loop = asyncio.get_running_loop()
        last = 0.0
        self._wake.set()  # evaluate at once on start (a restart may have missed changes)
        while True:
            woken = await wait_event(self._wake, self.settings.evaluate_interval_s)
            if woken:
                await asyncio.sleep(max(COALESCE_S, MIN_GAP_S - (loop.time() - last)))
            self._wake.clear()
            last = loop.time()
            try:
                await self.evaluate_now()
                failures = 0
            except Exception as exc:  # the loop outlives any failure: log, back off, try again
                failures += 1
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                delay = min(ERROR_BACKOFF_MAX_S, self.settings.evaluate_interval_s * 2**failures)
                log.exception("incidents.evaluate_failed", retry_in_s=delay)
                await asyncio.sleep(delay)

    # ------------------------------------------------------------------------------------------ internals

    def _on_change(self, kind: str) -> None:
        if kind in TRIGGERS:
            self._wake.set()

    async def _derive(self, session: AsyncSession, now: datetime) -> tuple[Loaded, Changes]:
        loaded = await load(session, self.config, now)
        if self.alerts_known_until is not None:
            loaded.snapshot.alerts_known_until = self.alerts_known_until()
        plan = rules.evaluate(loaded.snapshot, self.settings, self.language)
        changes = diff(
            loaded.snapshot,
            plan,
            loaded.stored(),
            language=self.language,
            cause_grace_s=self.settings.camera_fault_delay_s,
        )
        return loaded, changes

    async def _lock(self, session: AsyncSession) -> bool:
        """Take the writer's lock for this transaction (False: another instance holds it)."""
        if self.db.dialect == "postgresql":
            got = await session.scalar(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})
            return bool(got)
        # SQLite: a write statement (matching nothing) takes the database's write lock now, before the re-read,
        # so two engines on one file serialise (the second waits for busy_timeout).
        await session.execute(text("UPDATE incidents SET id = id WHERE id < 0"))
        return True

    async def _apply(
        self, session: AsyncSession, loaded: Loaded, changes: Changes, now: datetime
    ) -> tuple[list[Announcement], int]:
        announcements: list[Announcement] = []
        rows = loaded.incidents
        for close in changes.close:
            row = rows[close.incident_id]
            row.ended_at = close.closing.ended_at
            row.end_reason = close.closing.end_reason[:200]
            row.data = {
                **(row.data or {}),
                "end_code": close.closing.code,
                "end_values": dict(close.closing.values),
            }
            row.updated_at = now
            announcements.append((row, "closed"))
        for update in changes.update:
            row = rows[update.incident_id]
            for name, value in update.values.items():
                setattr(row, name, value[:300] if name == "title" else value)
            row.updated_at = now
            announcements.append((row, "updated"))
        new: list[Incident] = []
        for desired in changes.open:
            row = Incident(
                key=desired.key,
                type=desired.type,
                severity=desired.severity,
                site=desired.site,
                node_id=desired.node_id,
                device_id=desired.device_id,
                devices=list(desired.devices),
                title=desired.title[:300],
                detail=desired.detail,
                data=dict(desired.data),
                started_at=desired.started_at,
                ended_at=None,
                end_reason="",
                acknowledged_by=None,
                acknowledged_at=None,
                notes=[],
                updated_at=now,
            )
            session.add(row)
            new.append(row)
        if new:
            await session.flush()
        announcements.extend((row, "opened") for row in new)
        queued = 0
        for row, transition in announcements:
            if transition != "updated":
                queued += queue_notifications(session, self.config.notifications, incident_view(row), transition, now)
        open_ids = {row.key: row.id for row in rows.values() if row.ended_at is None}
        open_ids.update((row.key, row.id) for row in new)
        outages = loaded.outages
        for wanted in changes.open_outages:
            session.add(
                Outage(
                    node_id=wanted.node_id,
                    device_id=wanted.device_id,
                    kind=wanted.kind,
                    site=wanted.site,
                    cause=wanted.cause,
                    reason=wanted.reason[:64],
                    started_at=wanted.started_at,
                    ended_at=None,
                    incident_id=open_ids.get(wanted.incident_key) if wanted.incident_key else None,
                )
            )
        for change in changes.update_outages:
            outage = outages[change.outage_id]
            if change.cause is not None:
                outage.cause = change.cause
            if change.link_key is not None and change.link_key in open_ids:
                outage.incident_id = open_ids[change.link_key]
        for ended in changes.close_outages:
            outages[ended.outage_id].ended_at = ended.ended_at
            if ended.cause is not None:
                outages[ended.outage_id].cause = ended.cause
        return announcements, queued


__all__ = ["ADVISORY_LOCK_ID", "TRIGGERS", "IncidentEngine"]
