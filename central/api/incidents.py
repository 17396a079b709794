"""Incident API: the list and one incident (observer and up); acknowledge and annotate (dispatcher and up).

Acknowledging does not close an incident (the rules do that); a closed incident can still be acknowledged and
annotated. Both are audit-logged, published on the bus (``incident``) after the commit, and an acknowledgement
queues its notifications in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status

from central.api.incident_schemas import IncidentSystemStats, IncidentView, NoteRequest
from central.auth import audit
from central.auth.deps import Principal, client_ip, require_role
from central.auth.roles import Role
from central.deps import SessionDep, get_services
from central.incidents import queries
from central.incidents.texts import IncidentType
from central.notify.queue import queue_notifications
from central.notify.service import pending_count
from central.services import Services
from varta.contract import ID_PATTERN, utcnow

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/v1", tags=["incidents"])

Observer = Annotated[Principal, Depends(require_role(Role.OBSERVER))]
Dispatcher = Annotated[Principal, Depends(require_role(Role.DISPATCHER))]
ServicesDep = Annotated[Services, Depends(get_services)]
IncidentId = Annotated[int, Path(ge=1, le=2**62, description="incident id")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown incident"}}


def _view(incident: Any) -> IncidentView:
    return IncidentView.model_validate(queries.incident_view(incident))


@router.get("/incidents", response_model=list[IncidentView], summary="Incidents, open first, newest first")
async def list_incidents(
    session: SessionDep,
    _: Observer,
    state: Literal["open", "closed", "all"] = "open",
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    type_: Annotated[IncidentType | None, Query(alias="type")] = None,
    since: Annotated[datetime | None, Query(description="active at any time since (ISO 8601; UTC if no zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[IncidentView]:
    """Open, closed or all incidents, optionally of one site or type, or active since a time."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    rows = await queries.list_incidents(session, state=state, site=site, type=type_, since=since, limit=limit)
    return [_view(row) for row in rows]


@router.get(
    "/system/incidents",
    response_model=IncidentSystemStats,
    dependencies=[Depends(require_role(Role.OPERATOR))],
)
async def incident_system_stats(session: SessionDep, services: ServicesDep) -> IncidentSystemStats:
    """Counters of the incident engine (evaluations, opened/closed by type, errors) and of the notifications."""
    return IncidentSystemStats(
        engine=services.incidents.stats() if services.incidents is not None else None,
        notifications=services.notifications.stats() if services.notifications is not None else None,
        pending_notifications=await pending_count(session),
    )


@router.get("/incidents/{incident_id}", response_model=IncidentView, responses=NOT_FOUND)
async def get_incident(incident_id: IncidentId, session: SessionDep, _: Observer) -> IncidentView:
    """One incident, with its devices, notes and acknowledgement."""
    incident = await queries.get_incident(session, incident_id)
    if incident is None:
        raise HTTPException(404, f"unknown incident {incident_id}")
    return _view(incident)


@router.post("/incidents/{incident_id}/ack", response_model=IncidentView, responses=NOT_FOUND)
async def acknowledge(
    incident_id: IncidentId,
    request: Request,
    session: SessionDep,
    principal: Dispatcher,
    services: ServicesDep,
) -> IncidentView:
    """Acknowledge the incident (idempotent: the first acknowledgement stands). It stays open until it ends."""
    now = utcnow()
    try:
        incident = await queries.acknowledge(session, incident_id, principal.username, now)
    except LookupError:
        raise HTTPException(404, f"unknown incident {incident_id}") from None
    changed = incident.acknowledged_at == now and incident.acknowledged_by == principal.username
    view = queries.incident_view(incident)
    if not changed:
        await session.rollback()
        return IncidentView.model_validate(view)
    queued = queue_notifications(session, services.config.notifications, view, "acknowledged", now)
    await audit.record(
        session,
        actor=principal.username,
        action="incident.acknowledged",
        target=f"incident/{incident_id}",
        detail={"type": incident.type, "key": incident.key, "open": incident.ended_at is None},
        ip=client_ip(request),
    )
    await session.commit()
    services.bus.publish("incident", view)
    if queued and services.notifications is not None:
        services.notifications.wake()
    return IncidentView.model_validate(view)


@router.post(
    "/incidents/{incident_id}/notes",
    response_model=IncidentView,
    status_code=status.HTTP_201_CREATED,
    responses={**NOT_FOUND, 409: {"description": "the incident has as many notes as it may keep"}},
)
async def add_note(
    incident_id: IncidentId,
    body: NoteRequest,
    request: Request,
    session: SessionDep,
    principal: Dispatcher,
    services: ServicesDep,
) -> IncidentView:
    """Add a note (1 to 2000 characters) to the incident, open or closed."""
    try:
        incident = await queries.add_note(session, incident_id, principal.username, body.text, utcnow())
    except LookupError:
        raise HTTPException(404, f"unknown incident {incident_id}") from None
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    await audit.record(
        session,
        actor=principal.username,
        action="incident.note_added",
        target=f"incident/{incident_id}",
        detail={"type": incident.type, "chars": len(body.text)},
        ip=client_ip(request),
    )
    await session.commit()
    view = queries.incident_view(incident)
    services.bus.publish("incident", view)
    return IncidentView.model_validate(view)
