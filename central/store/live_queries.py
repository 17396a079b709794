"""Reads and writes of live-view sessions (shared by the API, ingest and the dashboard)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from central.api.live_schemas import LiveSessionView
from central.auth import audit
from central.store.camera_models import Camera
from central.store.live_models import LiveSession


def session_view(row: LiveSession, camera_name: str = "", now: datetime | None = None) -> LiveSessionView:
    """The API view of *row* (duration so far for an open session when *now* is given)."""
    view = LiveSessionView.model_validate(row)
    end = row.ended_at or now
    if end is not None:
        view.duration_s = round(max(0.0, (end - row.started_at).total_seconds()), 1)
    view.camera_name = camera_name
    return view


async def list_sessions(
    session: AsyncSession,
    *,
    active: bool | None = None,
    username: str | None = None,
    node_id: str | None = None,
    device_id: str | None = None,
    limit: int = 100,
    now: datetime | None = None,
) -> list[LiveSessionView]:
    """Sessions, open ones first, then newest first."""
    stmt = select(LiveSession, Camera.name).outerjoin(
        Camera, (Camera.node_id == LiveSession.node_id) & (Camera.device_id == LiveSession.device_id)
    )
    if active is True:
        stmt = stmt.where(LiveSession.ended_at.is_(None))
    elif active is False:
        stmt = stmt.where(LiveSession.ended_at.is_not(None))
    if username is not None:
        stmt = stmt.where(LiveSession.username == username)
    if node_id is not None:
        stmt = stmt.where(LiveSession.node_id == node_id)
    if device_id is not None:
        stmt = stmt.where(LiveSession.device_id == device_id)
    stmt = stmt.order_by(LiveSession.ended_at.is_not(None), LiveSession.started_at.desc()).limit(limit)
    rows = (await session.execute(stmt)).all()
    return [session_view(row, name or "", now) for row, name in rows]


async def open_count(session: AsyncSession, username: str) -> int:
    """How many live views *username* holds open."""
    stmt = select(func.count()).where(LiveSession.username == username, LiveSession.ended_at.is_(None))
    return int(await session.scalar(stmt) or 0)


async def end_session(
    session: AsyncSession,
    row: LiveSession,
    *,
    at: datetime,
    reason: str,
    detail: str = "",
    frames_sent: int | None = None,
    actor: str | None = None,
    ip: str | None = None,
) -> bool:
    """Close *row* once and audit the end; False when it was already closed, here or by a concurrent writer (the
    viewer's DELETE and the node's ``camera.live.ended`` often race): the update only applies to an open row.
    The caller commits."""
    ended_at = max(at, row.started_at)
    values: dict[str, object] = {"ended_at": ended_at, "end_reason": reason[:32], "end_detail": detail[:500]}
    if frames_sent is not None:
        values["frames_sent"] = frames_sent
    closed = await session.execute(
        update(LiveSession)
        .where(LiveSession.session_id == row.session_id, LiveSession.ended_at.is_(None))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if getattr(closed, "rowcount", 0) != 1:
        if frames_sent is not None:  # the other end came first: keep what only the node knows
            await session.execute(
                update(LiveSession)
                .where(LiveSession.session_id == row.session_id, LiveSession.frames_sent.is_(None))
                .values(frames_sent=frames_sent)
                .execution_options(synchronize_session=False)
            )
        await session.refresh(row)
        return False
    for key, value in values.items():
        set_committed_value(row, key, value)
    duration = round((ended_at - row.started_at).total_seconds(), 1)
    await audit.record(
        session,
        actor=actor or row.username,
        action="live.ended",
        target=f"{row.node_id}/{row.device_id}",
        detail={
            "session_id": row.session_id,
            "viewer": row.username,
            "reason": row.end_reason,
            "duration_s": duration,
            "started_at": row.started_at.isoformat(),
            "ended_at": ended_at.isoformat(),
        },
        ip=ip,
    )
    return True


async def end_node_sessions(session: AsyncSession, node_id: str, *, at: datetime, reason: str) -> list[LiveSession]:
    """Close every open session of *node_id* (the node went offline); returns them. The caller commits."""
    rows = (
        await session.scalars(select(LiveSession).where(LiveSession.node_id == node_id, LiveSession.ended_at.is_(None)))
    ).all()
    return [row for row in rows if await end_session(session, row, at=at, reason=reason, actor="central")]
