"""The audit log: security-relevant actions (logins, user and token changes, commands sent)."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from central.auth.models import AuditEntry
from varta.contract import utcnow

log = structlog.get_logger(__name__)


async def record(
    session: AsyncSession,
    *,
    actor: str | None,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
    success: bool = True,
) -> None:
    """Add an audit row to *session* (the caller commits it together with the change it describes)."""
    session.add(
        AuditEntry(
            ts=utcnow(),
            actor=actor,
            action=action,
            target=target,
            detail=detail or {},
            ip=ip,
            success=success,
        )
    )
    log.info("audit", actor=actor, action=action, target=target, success=success, ip=ip)


async def list_entries(
    session: AsyncSession,
    *,
    limit: int = 100,
    offset: int = 0,
    action: str | None = None,
    actor: str | None = None,
) -> tuple[list[AuditEntry], int]:
    """Newest entries first (optionally of one action or actor) and the total number that match."""
    conditions = []
    if action is not None:
        conditions.append(AuditEntry.action == action)
    if actor is not None:
        conditions.append(AuditEntry.actor == actor)
    total = await session.scalar(select(func.count()).select_from(AuditEntry).where(*conditions))
    rows = await session.scalars(
        select(AuditEntry).where(*conditions).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
    )
    return list(rows.all()), int(total or 0)
