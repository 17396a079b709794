"""Ingest's part of live view: a node's ``camera.live.ended`` event, or the node going offline, closes the session
row (and audits its end) so the admins' list and the viewer's page both learn why the video stopped."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from central.store import live_queries
from central.store.live_models import LiveSession
from varta.contract import Event, LiveEnded

log = structlog.get_logger(__name__)

#: ``end_reason`` of sessions closed because their node went offline.
NODE_OFFLINE = "node_offline"
#: ``end_reason`` of sessions closed because their node started again (a new boot).
NODE_RESTARTED = "node_restarted"


def ended_notice(row: LiveSession) -> dict[str, Any]:
    """The ``live_ended`` bus event for a closed session."""
    return {
        "session_id": row.session_id,
        "node_id": row.node_id,
        "device_id": row.device_id,
        "reason": row.end_reason,
        "detail": row.end_detail,
    }


async def close_from_events(
    session: AsyncSession, events: list[tuple[Event, datetime]], notices: list[dict[str, Any]]
) -> int:
    """Close the sessions named by these ``camera.live.ended`` events; appends a bus notice per closed session."""
    closed = 0
    for event, received_at in events:
        try:
            data = LiveEnded.model_validate(event.data)
        except ValidationError:
            log.warning("ingest.live_ended_invalid", node_id=event.node_id)
            continue
        row = await session.get(LiveSession, data.session_id)
        if row is None or row.node_id != event.node_id:
            continue  # a session central never answered (the viewer's request timed out), or not this node's
        at = min(received_at, event.ts) if event.ts.tzinfo is not None else received_at
        if await live_queries.end_session(
            session,
            row,
            at=at,
            reason=data.reason.value,
            detail=data.detail,
            frames_sent=data.frames_sent,
            actor=f"node:{event.node_id}",
        ):
            closed += 1
            notices.append(ended_notice(row))
    return closed


async def close_for_node(
    session: AsyncSession, node_id: str, at: datetime, notices: list[dict[str, Any]], *, reason: str = NODE_OFFLINE
) -> int:
    """Close every open session of a node that went offline (or restarted)."""
    ended = await live_queries.end_node_sessions(session, node_id, at=at, reason=reason)
    notices.extend(ended_notice(row) for row in ended)
    return len(ended)
