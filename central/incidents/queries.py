"""Reading and changing incidents outside the engine: lists, one incident, acknowledgement, notes, the shared view.

``incident_view`` is THE JSON shape of an incident: the REST API, the ``incident`` SSE event and the outbound
notifications all carry it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from central.store.incident_models import Incident

#: The longest note a dispatcher may add (characters).
NOTE_MAX_CHARS = 2000
#: How many notes one incident keeps (the oldest are kept: they record what was done first).
MAX_NOTES = 200


async def list_incidents(
    session: AsyncSession,
    *,
    state: Literal["open", "closed", "all"] = "open",
    site: str | None = None,
    type: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
) -> list[Incident]:
    """Incidents, open ones first, then newest first.

    ``since`` keeps incidents that were active at any time since then (still open, or ended at or after it).
    """
    conditions: list[Any] = []
    if state == "open":
        conditions.append(Incident.ended_at.is_(None))
    elif state == "closed":
        conditions.append(Incident.ended_at.is_not(None))
    if site is not None:
        conditions.append(Incident.site == site)
    if type is not None:
        conditions.append(Incident.type == type)
    if since is not None:
        conditions.append(or_(Incident.ended_at.is_(None), Incident.ended_at >= since))
    rows = await session.scalars(
        select(Incident)
        .where(*conditions)
        .order_by(Incident.ended_at.is_(None).desc(), Incident.started_at.desc(), Incident.id.desc())
        .limit(max(1, limit))
    )
    return list(rows.all())


async def get_incident(session: AsyncSession, incident_id: int) -> Incident | None:
    """One incident by id (None when there is none)."""
    return await session.get(Incident, incident_id)


async def _require(session: AsyncSession, incident_id: int, *, lock: bool = True) -> Incident:
    stmt = select(Incident).where(Incident.id == incident_id)
    if lock and session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    incident = (await session.scalars(stmt.execution_options(populate_existing=True))).first()
    if incident is None:
        raise LookupError(f"unknown incident {incident_id}")
    return incident


async def acknowledge(session: AsyncSession, incident_id: int, username: str, now: datetime) -> Incident:
    """Acknowledge an incident (open or closed); the first acknowledgement stands. Flushes, does not commit.

    Raises :class:`LookupError` for an unknown id. Whether this call changed anything is
    ``incident.acknowledged_at == now and incident.acknowledged_by == username``; the notification rows for a new
    acknowledgement are queued by :func:`central.notify.queue.queue_notifications` (the API does it).
    """
    incident = await _require(session, incident_id)
    if incident.acknowledged_at is None:
        incident.acknowledged_by = username
        incident.acknowledged_at = now
        incident.updated_at = now
        await session.flush()
    return incident


async def add_note(session: AsyncSession, incident_id: int, username: str, text: str, now: datetime) -> Incident:
    """Append a dispatcher's note (``{"at", "by", "text"}``) to an incident, open or closed. Flushes, no commit.

    Raises :class:`LookupError` for an unknown id and :class:`ValueError` for an empty or too long text.
    """
    text = text.strip()
    if not text or len(text) > NOTE_MAX_CHARS:
        raise ValueError(f"a note has 1 to {NOTE_MAX_CHARS} characters")
    incident = await _require(session, incident_id)
    notes = list(incident.notes or [])
    if len(notes) >= MAX_NOTES:
        raise ValueError(f"an incident keeps at most {MAX_NOTES} notes")
    notes.append({"at": now.isoformat(), "by": username, "text": text})
    incident.notes = notes  # a new list: SQLAlchemy does not see in-place changes of a JSON column
    incident.updated_at = now
    await session.flush()
    return incident


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def incident_view(incident: Incident) -> dict[str, Any]:
    """The JSON the API, the SSE ``incident`` event and notifications share."""
    ended = incident.ended_at
    data = dict(incident.data or {})
    return {
        "id": incident.id,
        "key": incident.key,
        "type": incident.type,
        "severity": incident.severity,
        "site": incident.site,
        "site_name": str(data.get("site_name") or incident.site),
        "node_id": incident.node_id,
        "device_id": incident.device_id,
        "devices": list(incident.devices or []),
        "title": incident.title,
        "detail": incident.detail,
        "data": data,
        "open": ended is None,
        "started_at": _iso(incident.started_at),
        "ended_at": _iso(ended),
        "duration_s": (ended - incident.started_at).total_seconds() if ended is not None else None,
        "end_reason": incident.end_reason,
        "acknowledged": incident.acknowledged_at is not None,
        "acknowledged_by": incident.acknowledged_by,
        "acknowledged_at": _iso(incident.acknowledged_at),
        "notes": list(incident.notes or []),
        "updated_at": _iso(incident.updated_at),
    }


__all__ = ["MAX_NOTES", "NOTE_MAX_CHARS", "acknowledge", "add_note", "get_incident", "incident_view", "list_incidents"]
