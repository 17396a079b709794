"""Camera API: the wall, one camera, its picture and history; PTZ and snapshots (dispatcher and up); adoption,
credentials, reboot, time sync and the discovery inbox (operator and up).

Passwords arrive only in request bodies, are sealed at once to the node's X25519 key (``varta.sealing``) and are
never stored, logged or answered: a validation error on these routes never echoes the input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from central.api.camera_schemas import (
    AdoptRequest,
    CameraDetail,
    CameraUpdate,
    CameraView,
    CredentialsRequest,
    DiscoveredView,
    PresetGotoRequest,
    PresetSetRequest,
    PtzMoveRequest,
    StatusChange,
)
from central.api.schemas import CommandView, EventView
from central.auth import audit
from central.auth.deps import Principal, client_ip, require_role
from central.auth.roles import Role
from central.commands import CommandError
from central.deps import SessionDep, get_services
from central.services import Services
from central.store import camera_queries
from central.store.camera_models import Camera, CameraSnapshot, DiscoveredDeviceRecord
from central.store.fleet_models import Node
from varta.contract import (
    ID_PATTERN,
    AdoptCameraParams,
    CameraCredentialsParams,
    CameraRef,
    CommandType,
    DeviceStatus,
    PtzMoveParams,
    PtzPresetParams,
    utcnow,
)
from varta.sealing import Credentials, SealingError, seal_credentials

log = structlog.get_logger(__name__)

#: PTZ and snapshot commands are worth nothing late: a short deadline so a stale move never runs.
PTZ_TTL_S = 10
REDACTED = "(sealed)"


class NoParams(BaseModel):
    """``params`` of commands that take none."""

    model_config = ConfigDict(extra="forbid")


class NoEchoRoute(APIRoute):
    """Validation errors without the ``input`` field: a rejected body may hold a password."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def no_echo(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                errors = [{k: v for k, v in e.items() if k not in ("input", "ctx")} for e in exc.errors()]
                raise RequestValidationError(errors) from None

        return no_echo


router = APIRouter(prefix="/api/v1", tags=["cameras"], route_class=NoEchoRoute)

NodeId = Annotated[str, Path(pattern=ID_PATTERN, description="node id")]
DeviceId = Annotated[str, Path(pattern=ID_PATTERN, description="camera id on the node")]
Dispatcher = Annotated[Principal, Depends(require_role(Role.DISPATCHER))]
Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
ServicesDep = Annotated[Services, Depends(get_services)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown camera"}}
SENT: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown camera"},
    503: {"description": "broker unavailable"},
}


async def _camera(session: AsyncSession, node_id: str, device_id: str) -> Camera:
    camera = await camera_queries.get_camera(session, node_id, device_id)
    if camera is None:
        raise HTTPException(404, f"unknown camera {node_id}/{device_id}")
    return camera


async def _send(
    services: Services,
    session: AsyncSession,
    request: Request,
    principal: Principal,
    node_id: str,
    command: CommandType,
    params: BaseModel,
    *,
    ttl_s: int | None = None,
    recorded: dict[str, Any] | None = None,
) -> CommandView:
    if services.commands is None:
        raise HTTPException(503, "commands are not available (no broker connection configured)")
    try:
        return await services.commands.send(
            session,
            node_id=node_id,
            command=command.value,
            params=params.model_dump(mode="json"),
            issued_by=principal.username,
            ttl_s=ttl_s,
            ip=client_ip(request),
            recorded_params=recorded,
        )
    except CommandError as exc:
        raise HTTPException(exc.status, exc.detail) from None


async def _seal_for(session: AsyncSession, services: Services, node_id: str, username: str, password: str) -> str:
    """Credentials sealed to *node_id*'s key; 409 when there is no key to trust (never sent in clear)."""
    node = await session.get(Node, node_id)
    if node is None:
        raise HTTPException(404, f"unknown node {node_id}")
    if node.box_key_revoked_at is not None:
        raise HTTPException(409, f"node {node_id}'s key was revoked: enrol its key again before sending it passwords")
    if services.config.auth.require_enrolled_node_keys and node.box_key_enrolled_at is None:
        raise HTTPException(
            409,
            f"node {node_id} has no enrolled key (auth.require_enrolled_node_keys): enrol the key"
            " `varta edge pubkey` prints on the node (PUT /api/v1/nodes/{node_id}/box-key)",
        )
    if not node.box_public_key:
        raise HTTPException(
            409,
            f"node {node_id} has not announced a key to seal credentials to (box_public_key): update its agent;"
            " credentials are never sent in clear",
        )
    try:
        return seal_credentials(node.box_public_key, Credentials(username=username, password=password))
    except SealingError:
        raise HTTPException(409, f"node {node_id} announced an unusable sealing key") from None


@router.get("/cameras", response_model=list[CameraView], summary="All cameras, offline and degraded first")
async def list_cameras(
    session: SessionDep,
    _: Dispatcher,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    status_: Annotated[DeviceStatus | None, Query(alias="status")] = None,
) -> list[CameraView]:
    """Cameras with status, reason and picture time (optionally of one site, or in one status)."""
    return await camera_queries.list_cameras(session, site=site, status=status_.value if status_ else None)


@router.get("/cameras/{node_id}/{device_id}", response_model=CameraDetail, responses=NOT_FOUND)
async def get_camera(node_id: NodeId, device_id: DeviceId, session: SessionDep, _: Dispatcher) -> CameraDetail:
    """One camera: status, reason, ONVIF description (addresses without credentials), age of its picture."""
    view = await camera_queries.camera_detail_of(session, node_id, device_id)
    if view is None:
        raise HTTPException(404, f"unknown camera {node_id}/{device_id}")
    return view


@router.get("/cameras/{node_id}/{device_id}/history", response_model=list[StatusChange], responses=NOT_FOUND)
async def get_history(
    node_id: NodeId,
    device_id: DeviceId,
    session: SessionDep,
    _: Dispatcher,
    hours: Annotated[float, Query(gt=0, le=24 * 31)] = 24.0,
) -> list[StatusChange]:
    """Status changes of the last *hours*, oldest first."""
    await _camera(session, node_id, device_id)
    since = utcnow() - timedelta(hours=hours)
    return await camera_queries.status_history(session, node_id, device_id, since=since)


@router.get("/cameras/{node_id}/{device_id}/events", response_model=list[EventView], responses=NOT_FOUND)
async def get_events(
    node_id: NodeId,
    device_id: DeviceId,
    session: SessionDep,
    _: Dispatcher,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[EventView]:
    """The camera's events (status, tamper, motion, …), newest first."""
    await _camera(session, node_id, device_id)
    return await camera_queries.camera_events(session, node_id, device_id, limit=limit)


@router.get(
    "/cameras/{node_id}/{device_id}/snapshot",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "the latest picture"}, **NOT_FOUND},
)
async def get_snapshot(
    node_id: NodeId, device_id: DeviceId, request: Request, session: SessionDep, _: Dispatcher
) -> Response:
    """The latest picture (``image/jpeg``); ``ETag``/``If-None-Match`` answer 304 when it has not changed."""
    snap: CameraSnapshot | None = await camera_queries.latest_snapshot(session, node_id, device_id)
    if snap is None:
        raise HTTPException(404, f"no picture of {node_id}/{device_id} yet")
    etag = '"' + hashlib.sha256(f"{snap.id}:{snap.taken_at.isoformat()}".encode()).hexdigest()[:20] + '"'
    headers = {
        "ETag": etag,
        "Cache-Control": "private, no-cache",
        "Last-Modified": snap.taken_at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "X-Snapshot-Taken-At": snap.taken_at.isoformat(),
        "X-Snapshot-Source": snap.source,
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(content=snap.data, media_type=snap.content_type, headers=headers)


# --------------------------------------------------------------------------------------------------- dispatcher


@router.post(
    "/cameras/{node_id}/{device_id}/snapshot",
    response_model=CommandView,
    status_code=status.HTTP_202_ACCEPTED,
    responses=SENT,
)
async def request_snapshot(
    node_id: NodeId,
    device_id: DeviceId,
    request: Request,
    session: SessionDep,
    principal: Dispatcher,
    services: ServicesDep,
) -> CommandView:
    """Ask the node for a fresh picture (it arrives on the ``camera`` stream event)."""
    await _camera(session, node_id, device_id)
    params = CameraRef(device_id=device_id)
    return await _send(services, session, request, principal, node_id, CommandType.CAMERA_SNAPSHOT, params, ttl_s=30)


@router.post(
    "/cameras/{node_id}/{device_id}/ptz/move",
    response_model=CommandView,
    status_code=status.HTTP_202_ACCEPTED,
    responses=SENT,
)
async def ptz_move(
    node_id: NodeId,
    device_id: DeviceId,
    body: PtzMoveRequest,
    request: Request,
    session: SessionDep,
    principal: Dispatcher,
    services: ServicesDep,
) -> CommandView:
    """Continuous pan/tilt/zoom until ``ptz/stop`` (or ``timeout_s``)."""
    await _camera(session, node_id, device_id)
    params = PtzMoveParams(device_id=device_id, **body.model_dump())
    return await _send(
        services, session, request, principal, node_id, CommandType.CAMERA_PTZ_MOVE, params, ttl_s=PTZ_TTL_S
    )


@router.post(
    "/cameras/{node_id}/{device_id}/ptz/stop",
    response_model=CommandView,
    status_code=status.HTTP_202_ACCEPTED,
    responses=SENT,
)
async def ptz_stop(
    node_id: NodeId,
    device_id: DeviceId,
    request: Request,
    session: SessionDep,
    principal: Dispatcher,
    services: ServicesDep,
) -> CommandView:
    """Stop any PTZ movement."""
    await _camera(session, node_id, device_id)
    params = CameraRef(device_id=device_id)
    return await _send(
        services, session, request, principal, node_id, CommandType.CAMERA_PTZ_STOP, params, ttl_s=PTZ_TTL_S
    )


@router.post(
    "/cameras/{node_id}/{device_id}/ptz/presets/goto",
    response_model=CommandView,
    status_code=status.HTTP_202_ACCEPTED,
    responses=SENT,
)
async def ptz_goto(
    node_id: NodeId,
    device_id: DeviceId,
    body: PresetGotoRequest,
    request: Request,
    session: SessionDep,
    principal: Dispatcher,
    services: ServicesDep,
) -> CommandView:
    """Turn the camera to a saved preset."""
    await _camera(session, node_id, device_id)
    params = PtzPresetParams(device_id=device_id, token=body.token)
    return await _send(
        services, session, request, principal, node_id, CommandType.CAMERA_PTZ_GOTO_PRESET, params, ttl_s=PTZ_TTL_S
    )


@router.post(
    "/cameras/{node_id}/{device_id}/ptz/presets",
    response_model=CommandView,
    status_code=status.HTTP_202_ACCEPTED,
    responses=SENT,
)
async def ptz_set_preset(
    node_id: NodeId,
    device_id: DeviceId,
    body: PresetSetRequest,
    request: Request,
    session: SessionDep,
    principal: Dispatcher,
    services: ServicesDep,
) -> CommandView:
    """Save the current position as a preset (named; or overwrite ``token``)."""
    await _camera(session, node_id, device_id)
    params = PtzPresetParams(device_id=device_id, token=body.token, name=body.name)
    return await _send(
        services, session, request, principal, node_id, CommandType.CAMERA_PTZ_SET_PRESET, params, ttl_s=30
    )


# --------------------------------------------------------------------------------------------------- operator


@router.patch("/cameras/{node_id}/{device_id}", response_model=CameraDetail, responses=NOT_FOUND)
async def update_camera(
    node_id: NodeId, device_id: DeviceId, body: CameraUpdate, session: SessionDep, _: Operator
) -> CameraDetail:
    """Rename or re-place a camera (central only; nothing is sent to the node)."""
    camera = await _camera(session, node_id, device_id)
    for key, value in body.model_dump(exclude_unset=True).items():
        if value is not None or key in ("latitude", "longitude"):
            setattr(camera, key, value)
    await session.commit()
    detail = await camera_queries.camera_detail_of(session, node_id, device_id)
    assert detail is not None
    return detail


@router.post(
    "/cameras/{node_id}/{device_id}/credentials",
    response_model=CommandView,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**SENT, 409: {"description": "the node has no sealing key"}},
)
async def set_credentials(
    node_id: NodeId,
    device_id: DeviceId,
    body: CredentialsRequest,
    request: Request,
    session: SessionDep,
    principal: Operator,
    services: ServicesDep,
) -> CommandView:
    """Send a new login to the camera's node, sealed to the node's key (central keeps no copy)."""
    await _camera(session, node_id, device_id)
    sealed = await _seal_for(session, services, node_id, body.username, body.password.get_secret_value())
    params = CameraCredentialsParams(device_id=device_id, sealed_credentials=sealed)
    await audit.record(
        session,
        actor=principal.username,
        action="camera.credentials_changed",
        target=f"{node_id}/{device_id}",
        detail={"node_id": node_id, "device_id": device_id},
        ip=client_ip(request),
    )
    recorded = {"device_id": device_id, "sealed_credentials": REDACTED}
    return await _send(
        services, session, request, principal, node_id, CommandType.CAMERA_SET_CREDENTIALS, params, recorded=recorded
    )


@router.post(
    "/cameras/{node_id}/{device_id}/reboot",
    response_model=CommandView,
    status_code=status.HTTP_202_ACCEPTED,
    responses=SENT,
)
async def reboot(
    node_id: NodeId,
    device_id: DeviceId,
    request: Request,
    session: SessionDep,
    principal: Operator,
    services: ServicesDep,
) -> CommandView:
    """Reboot the camera (it is off the air for a minute or two)."""
    await _camera(session, node_id, device_id)
    await audit.record(
        session,
        actor=principal.username,
        action="camera.reboot",
        target=f"{node_id}/{device_id}",
        detail={"node_id": node_id, "device_id": device_id},
        ip=client_ip(request),
    )
    params = CameraRef(device_id=device_id)
    return await _send(services, session, request, principal, node_id, CommandType.CAMERA_REBOOT, params)


@router.post(
    "/cameras/{node_id}/{device_id}/time-sync",
    response_model=CommandView,
    status_code=status.HTTP_202_ACCEPTED,
    responses=SENT,
)
async def time_sync(
    node_id: NodeId,
    device_id: DeviceId,
    request: Request,
    session: SessionDep,
    principal: Operator,
    services: ServicesDep,
) -> CommandView:
    """Set the camera's clock from the node's."""
    await _camera(session, node_id, device_id)
    params = CameraRef(device_id=device_id)
    return await _send(services, session, request, principal, node_id, CommandType.CAMERA_SYNC_TIME, params)


@router.delete(
    "/cameras/{node_id}/{device_id}",
    response_model=CommandView,
    status_code=status.HTTP_202_ACCEPTED,
    responses=SENT,
)
async def forget_camera(
    node_id: NodeId,
    device_id: DeviceId,
    request: Request,
    session: SessionDep,
    principal: Operator,
    services: ServicesDep,
) -> CommandView:
    """Tell the node to forget the camera (and its credentials); central drops it from the wall."""
    camera = await _camera(session, node_id, device_id)
    await audit.record(
        session,
        actor=principal.username,
        action="camera.forgotten",
        target=f"{node_id}/{device_id}",
        detail={"node_id": node_id, "device_id": device_id},
        ip=client_ip(request),
    )
    params = CameraRef(device_id=device_id)
    view = await _send(services, session, request, principal, node_id, CommandType.CAMERA_FORGET, params)
    if camera.endpoint:
        for row in await _discovered_with(session, node_id, camera.endpoint):
            row.state, row.device_id = "new", None
    await session.delete(camera)
    await session.commit()
    return view


async def _discovered_with(session: AsyncSession, node_id: str, endpoint: str) -> list[DiscoveredDeviceRecord]:
    stmt = select(DiscoveredDeviceRecord).where(
        DiscoveredDeviceRecord.node_id == node_id, DiscoveredDeviceRecord.endpoint == endpoint
    )
    return list((await session.scalars(stmt)).all())


# --------------------------------------------------------------------------------------------------- discovery


@router.get("/discovery", response_model=list[DiscoveredView], summary="The discovery inbox")
async def list_discovered(
    session: SessionDep,
    _: Operator,
    state: Annotated[Literal["new", "ignored", "adopted"] | None, Query()] = None,
    node_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> list[DiscoveredView]:
    """ONVIF devices the nodes found, newest sighting first."""
    return await camera_queries.discovered(session, state=state, node_id=node_id)


@router.post(
    "/nodes/{node_id}/discovery",
    response_model=CommandView,
    status_code=status.HTTP_202_ACCEPTED,
    responses={404: {"description": "unknown node"}, 503: {"description": "broker unavailable"}},
)
async def probe(
    node_id: NodeId, request: Request, session: SessionDep, principal: Operator, services: ServicesDep
) -> CommandView:
    """Ask a node to probe its LAN for ONVIF devices now (the report fills the inbox)."""
    return await _send(services, session, request, principal, node_id, CommandType.CAMERA_DISCOVER, NoParams())


async def _inbox_row(session: AsyncSession, item_id: int) -> DiscoveredDeviceRecord:
    row = await session.get(DiscoveredDeviceRecord, item_id)
    if row is None:
        raise HTTPException(404, f"no discovered device {item_id}")
    return row


ItemId = Annotated[int, Path(ge=1, description="inbox entry id")]


def default_device_id(endpoint: str) -> str:
    """A stable camera id for a discovered device: ``cam-`` and 8 hex digits of its endpoint."""
    return "cam-" + hashlib.sha256(endpoint.encode()).hexdigest()[:8]


@router.post(
    "/discovery/{item_id}/adopt",
    response_model=CommandView,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"description": "unknown entry or node"},
        409: {"description": "already adopted, id taken, or the node has no sealing key"},
        503: {"description": "broker unavailable"},
    },
)
async def adopt(
    item_id: ItemId,
    body: AdoptRequest,
    request: Request,
    session: SessionDep,
    principal: Operator,
    services: ServicesDep,
) -> CommandView:
    """Adopt a discovered device: the credentials go to its node sealed to the node's key, never stored here."""
    row = await _inbox_row(session, item_id)
    if row.state == "adopted":
        raise HTTPException(409, f"already adopted as {row.device_id}")
    node = await session.get(Node, row.node_id)
    if node is None:
        raise HTTPException(404, f"unknown node {row.node_id}")
    device_id = body.device_id or default_device_id(row.endpoint)
    existing = await camera_queries.get_camera(session, row.node_id, device_id)
    if existing is not None and existing.adopted_at is not None:
        raise HTTPException(409, f"node {row.node_id} already has a camera {device_id}")
    password = body.password.get_secret_value()
    sealed = None
    if body.username or password:
        sealed = await _seal_for(session, services, row.node_id, body.username, password)
    onvif_address = body.onvif_address if body.onvif_address is not None else (row.xaddrs[0] if row.xaddrs else "")
    params = AdoptCameraParams(
        device_id=device_id,
        name=body.name,
        onvif_address=onvif_address,
        endpoint=row.endpoint,
        stream_uri=body.stream_uri,
        sealed_credentials=sealed,
    )
    now = utcnow()
    camera = existing or Camera(
        node_id=row.node_id, device_id=device_id, status="unknown", detail="", attrs={}, created_at=now
    )
    camera.site = body.site or node.site
    camera.name = body.name
    camera.position = body.position
    camera.latitude = body.latitude
    camera.longitude = body.longitude
    camera.endpoint = row.endpoint
    camera.adopted_at = now
    camera.adopted_by = principal.username
    if existing is None:
        session.add(camera)
    previous_state = row.state
    row.state, row.device_id, row.state_by, row.state_at = "adopted", device_id, principal.username, now
    await audit.record(
        session,
        actor=principal.username,
        action="camera.adopted",
        target=f"{row.node_id}/{device_id}",
        detail={
            "node_id": row.node_id,
            "device_id": device_id,
            "endpoint": row.endpoint,
            "name": body.name,
            "credentials": sealed is not None,
        },
        ip=client_ip(request),
    )
    recorded = params.model_dump(mode="json")
    if sealed is not None:
        recorded["sealed_credentials"] = REDACTED
    try:
        return await _send(
            services, session, request, principal, row.node_id, CommandType.CAMERA_ADOPT, params, recorded=recorded
        )
    except HTTPException:
        # Not sent: the device goes back to the inbox (the failed command stays recorded, redacted).
        await session.rollback()
        row = await _inbox_row(session, item_id)
        if row.state == "adopted" and row.device_id == device_id:
            row.state, row.device_id = previous_state, None
            stale = await camera_queries.get_camera(session, row.node_id, device_id)
            if stale is not None and existing is None:
                await session.delete(stale)
            await session.commit()
        raise


@router.post("/discovery/{item_id}/ignore", response_model=DiscoveredView, responses=NOT_FOUND)
async def ignore(item_id: ItemId, session: SessionDep, principal: Operator) -> DiscoveredView:
    """Hide a device from the inbox (it stays ignored when found again)."""
    return await _set_state(session, item_id, "ignored", principal)


@router.post("/discovery/{item_id}/unignore", response_model=DiscoveredView, responses=NOT_FOUND)
async def unignore(item_id: ItemId, session: SessionDep, principal: Operator) -> DiscoveredView:
    """Bring an ignored device back to the inbox."""
    return await _set_state(session, item_id, "new", principal)


async def _set_state(
    session: AsyncSession, item_id: int, state: Literal["new", "ignored"], principal: Principal
) -> DiscoveredView:
    row = await _inbox_row(session, item_id)
    if row.state == "adopted":
        raise HTTPException(409, f"already adopted as {row.device_id}")
    row.state, row.state_by, row.state_at = state, principal.username, utcnow()
    await session.commit()
    views = [v for v in await camera_queries.discovered(session, node_id=row.node_id) if v.id == item_id]
    return views[0]
