"""Audit log API (admin): who did what, newest first, paged."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from central.auth import audit as audit_service
from central.auth.deps import Principal, require_role
from central.auth.roles import Role
from central.deps import SessionDep

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]


class AuditView(BaseModel):
    """One audit entry."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    ts: datetime
    actor: str | None
    action: str
    target: str | None
    detail: dict[str, Any]
    ip: str | None
    success: bool


class AuditPage(BaseModel):
    """A page of the audit log."""

    items: list[AuditView]
    total: int
    limit: int
    offset: int


@router.get("", response_model=AuditPage, summary="The audit log, newest first")
async def list_audit(
    session: SessionDep,
    _: Admin,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    action: Annotated[str | None, Query(max_length=64, description="e.g. auth.login_failed")] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
) -> AuditPage:
    """Entries matching the filters, *limit* at a time from *offset*, with the total count."""
    rows, total = await audit_service.list_entries(session, limit=limit, offset=offset, action=action, actor=actor)
    return AuditPage(items=[AuditView.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)
