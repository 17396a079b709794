"""Live view over WHEP (RFC 9725): the browser posts an SDP offer, central relays it to the camera's node as a
signed ``camera.live.start`` and answers ``201`` with the node's SDP answer; media then flows between browser and
node. ``DELETE`` on the ``Location`` ends the session. Viewing needs view rights (dispatcher and up); every
session is recorded (who, which camera, start, end, why it ended) and audited, and admins can list them.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from central.api.live_schemas import LiveConfigView, LiveSessionView
from central.auth import audit
from central.auth.deps import Principal, client_ip, require_role
from central.auth.roles import Role
from central.commands import CommandError
from central.deps import SessionDep, get_services
from central.services import Services
from central.store import camera_queries, live_queries
from central.store.fleet_models import Node
from central.store.live_models import LiveSession
from varta.contract import (
    ID_PATTERN,
    SESSION_ID_PATTERN,
    CommandRejection,
    CommandResult,
    CommandStatus,
    CommandType,
    IceServer,
    LiveEndReason,
    LiveError,
    LiveStartParams,
    LiveStartResult,
    LiveStopParams,
    LiveStream,
    utcnow,
)

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/v1", tags=["live"])

NodeId = Annotated[str, Path(pattern=ID_PATTERN, description="node id")]
DeviceId = Annotated[str, Path(pattern=ID_PATTERN, description="camera id on the node")]
SessionId = Annotated[str, Path(pattern=SESSION_ID_PATTERN, description="live session id (from Location)")]
Viewer = Annotated[Principal, Depends(require_role(Role.DISPATCHER))]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]
ServicesDep = Annotated[Services, Depends(get_services)]

SDP = "application/sdp"
MAX_OFFER_BYTES = 32_768
#: ``camera.live.stop`` is worth nothing late.
STOP_TTL_S = 30
#: How a failed ``camera.live.start`` becomes an HTTP status.
_ERROR_STATUS: dict[str, int] = {
    LiveError.UNKNOWN_CAMERA.value: status.HTTP_404_NOT_FOUND,
    LiveError.CAPACITY.value: status.HTTP_503_SERVICE_UNAVAILABLE,
    LiveError.SOURCE_UNAVAILABLE.value: status.HTTP_502_BAD_GATEWAY,
    LiveError.BAD_OFFER.value: status.HTTP_400_BAD_REQUEST,
    LiveError.NO_COMMON_CODEC.value: status.HTTP_406_NOT_ACCEPTABLE,
    LiveError.LIVE_DISABLED.value: status.HTTP_501_NOT_IMPLEMENTED,
}


def _link_header(servers: list[IceServer]) -> str | None:
    """ICE servers as WHEP ``Link: <url>; rel="ice-server"`` values (RFC 9725 §4.6)."""
    links = []
    for server in servers:
        for url in server.urls:
            link = f'<{url}>; rel="ice-server"'
            if server.username is not None and server.credential is not None:
                user = server.username.replace('"', "")
                cred = server.credential.replace('"', "")
                link += f'; username="{user}"; credential="{cred}"; credential-type="password"'
            links.append(link)
    return ", ".join(links) or None


async def _offer(request: Request) -> str:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != SDP:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"the body must be an SDP offer ({SDP})")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_OFFER_BYTES:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"SDP offer larger than {MAX_OFFER_BYTES} bytes")
    try:
        offer = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the SDP offer is not UTF-8 text") from None
    if not offer.startswith("v=0") or "\nm=video " not in offer.replace("\r\n", "\n"):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "not an SDP offer with a video section")
    return offer


def _failure(result: CommandResult, node_id: str) -> HTTPException:
    """The HTTP error for a failed or refused ``camera.live.start``."""
    if result.status is CommandStatus.REJECTED:
        if result.reason == CommandRejection.UNKNOWN_COMMAND.value:
            return HTTPException(status.HTTP_501_NOT_IMPLEMENTED, f"node {node_id} has no live view: update its agent")
        return HTTPException(status.HTTP_502_BAD_GATEWAY, f"node {node_id} refused the request ({result.reason})")
    code = _ERROR_STATUS.get(result.reason or "", status.HTTP_502_BAD_GATEWAY)
    headers = {"Retry-After": "10"} if code == status.HTTP_503_SERVICE_UNAVAILABLE else None
    return HTTPException(code, result.detail or f"live view failed ({result.reason or 'error'})", headers=headers)


async def _open_row(session: AsyncSession, session_id: str) -> LiveSession:
    row = await session.get(LiveSession, session_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no live session {session_id}")
    return row


@router.get("/live/config", response_model=LiveConfigView, summary="ICE servers for the browser's offer")
async def live_config(services: ServicesDep, _: Viewer) -> LiveConfigView:
    """The STUN/TURN servers (none by default) the browser's ``RTCPeerConnection`` uses."""
    live = services.config.live
    return LiveConfigView(ice_servers=live.ice_servers, max_sessions_per_user=live.max_sessions_per_user)


@router.post(
    "/cameras/{node_id}/{device_id}/whep",
    status_code=status.HTTP_201_CREATED,
    response_class=Response,
    summary="Start a live view (WHEP): SDP offer in, SDP answer out",
    openapi_extra={"requestBody": {"required": True, "content": {SDP: {"schema": {"type": "string"}}}}},
    responses={
        201: {"content": {SDP: {}}, "description": "the node's SDP answer; Location names the session"},
        400: {"description": "not an SDP offer"},
        404: {"description": "unknown camera"},
        406: {"description": "the browser cannot receive the camera's codec"},
        413: {"description": "offer too large"},
        415: {"description": "not application/sdp"},
        429: {"description": "too many live views open for this user"},
        501: {"description": "no live view on this node (old agent, live view off, simulated camera)"},
        502: {"description": "the camera's stream could not be opened, or the node refused"},
        503: {"description": "broker or node unavailable, or viewer limit reached (Retry-After)"},
        504: {"description": "the node did not answer in time"},
    },
)
async def start_live(
    node_id: NodeId,
    device_id: DeviceId,
    request: Request,
    session: SessionDep,
    principal: Viewer,
    services: ServicesDep,
    stream: Annotated[LiveStream, Query(description="main: full resolution; sub: for camera walls")] = (
        LiveStream.MAIN
    ),
) -> Response:
    """Relay the browser's offer to the camera's node and answer with the node's SDP (no trickle ICE)."""
    offer = await _offer(request)
    camera = await camera_queries.get_camera(session, node_id, device_id)
    if camera is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown camera {node_id}/{device_id}")
    node = await session.get(Node, node_id)
    if node is None or not node.online:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"node {node_id} is offline", headers={"Retry-After": "30"}
        )
    live = services.config.live
    if await live_queries.open_count(session, principal.username) >= live.max_sessions_per_user:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"you have {live.max_sessions_per_user} live views open already: close one first",
        )
    if services.commands is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "commands are not available (no broker connection)")
    session_id = secrets.token_urlsafe(16)
    try:
        params = LiveStartParams(
            device_id=device_id, session_id=session_id, stream=stream, offer_sdp=offer, ice_servers=live.ice_servers
        )
    except ValidationError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "not a usable SDP offer") from None
    recorded: dict[str, Any] = {
        "device_id": device_id,
        "session_id": session_id,
        "stream": stream.value,
        "offer_sdp": f"(SDP offer, {len(offer)} bytes)",
        "ice_servers": len(live.ice_servers),
    }
    ip = client_ip(request)
    ttl = max(5, int(live.start_timeout_s) + 3)
    try:
        _, result = await services.commands.request(
            session,
            node_id=node_id,
            command=CommandType.CAMERA_LIVE_START.value,
            params=params.model_dump(mode="json"),
            issued_by=principal.username,
            ttl_s=ttl,
            timeout_s=live.start_timeout_s,
            ip=ip,
            recorded_params=recorded,
        )
    except CommandError as exc:
        await _refused(session, principal, node_id, device_id, session_id, exc.detail, ip)
        raise HTTPException(exc.status, exc.detail) from None
    if result.status is not CommandStatus.OK:
        error = _failure(result, node_id)
        await _refused(session, principal, node_id, device_id, session_id, str(error.detail), ip)
        raise error
    try:
        answer = LiveStartResult.model_validate(result.result)
    except ValueError:
        await _refused(session, principal, node_id, device_id, session_id, "invalid answer from the node", ip)
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"node {node_id} sent an invalid answer") from None
    now = utcnow()
    session.add(
        LiveSession(
            session_id=session_id,
            node_id=node_id,
            device_id=device_id,
            site=camera.site,
            stream=stream.value,
            username=principal.username,
            ip=ip,
            user_agent=request.headers.get("user-agent", "")[:300],
            codec=answer.codec[:100],
            started_at=now,
            end_detail="",
        )
    )
    await audit.record(
        session,
        actor=principal.username,
        action="live.started",
        target=f"{node_id}/{device_id}",
        detail={"session_id": session_id, "stream": stream.value, "codec": answer.codec, "shared": answer.shared},
        ip=ip,
    )
    await session.commit()
    log.info(
        "live.started",
        node_id=node_id,
        device_id=device_id,
        session_id=session_id,
        user=principal.username,
        viewers=answer.viewers,
        shared=answer.shared,
    )
    headers = {
        "Location": f"/api/v1/live/sessions/{session_id}",
        "Cache-Control": "no-store",
        "X-Varta-Codec": answer.codec,
    }
    link = _link_header(live.ice_servers)
    if link:
        headers["Link"] = link
    return Response(answer.answer_sdp, status_code=status.HTTP_201_CREATED, media_type=SDP, headers=headers)


async def _refused(
    session: AsyncSession,
    principal: Principal,
    node_id: str,
    device_id: str,
    session_id: str,
    detail: str,
    ip: str | None,
) -> None:
    await session.rollback()
    await audit.record(
        session,
        actor=principal.username,
        action="live.failed",
        target=f"{node_id}/{device_id}",
        detail={"session_id": session_id, "error": detail[:300]},
        ip=ip,
        success=False,
    )
    await session.commit()


@router.delete(
    "/live/sessions/{session_id}",
    summary="End a live view (WHEP teardown)",
    responses={200: {"description": "ended"}, 403: {"description": "not yours"}, 404: {"description": "unknown"}},
)
async def stop_live(
    session_id: SessionId, request: Request, session: SessionDep, principal: Viewer, services: ServicesDep
) -> Response:
    """End the session: the node stops sending (and stops the camera's pull once nobody watches)."""
    row = await _open_row(session, session_id)
    if row.username != principal.username and not principal.role.allows(Role.ADMIN):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this live view belongs to someone else")
    if row.ended_at is None and services.commands is not None:
        try:
            await services.commands.send(
                session,
                node_id=row.node_id,
                command=CommandType.CAMERA_LIVE_STOP.value,
                params=LiveStopParams(device_id=row.device_id, session_id=session_id).model_dump(mode="json"),
                issued_by=principal.username,
                ttl_s=STOP_TTL_S,
                ip=client_ip(request),
            )
        except CommandError as exc:  # the node notices the viewer is gone by itself (ICE consent)
            log.warning("live.stop_not_sent", session_id=session_id, error=exc.detail)
    reason = LiveEndReason.VIEWER_LEFT.value
    await live_queries.end_session(
        session, row, at=utcnow(), reason=reason, actor=principal.username, ip=client_ip(request)
    )
    await session.commit()
    return Response(status_code=status.HTTP_200_OK)


@router.patch(
    "/live/sessions/{session_id}",
    summary="Trickle ICE (not supported)",
    responses={405: {"description": "candidates travel in the offer and answer"}},
)
async def patch_live(session_id: SessionId, _: Viewer) -> Response:
    """Trickle ICE and ICE restarts are not supported: offer and answer carry every candidate (RFC 9725 §4.3)."""
    return Response(status_code=status.HTTP_405_METHOD_NOT_ALLOWED, headers={"Allow": "DELETE"})


@router.get("/live/sessions", response_model=list[LiveSessionView], summary="Who watched what (admin)")
async def list_live(
    session: SessionDep,
    _: Admin,
    active: Annotated[bool | None, Query(description="only open (true) or ended (false) sessions")] = None,
    username: Annotated[str | None, Query(max_length=64)] = None,
    node_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    device_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[LiveSessionView]:
    """Live views, open ones first, then newest first: viewer, camera, start, end, reason."""
    return await live_queries.list_sessions(
        session, active=active, username=username, node_id=node_id, device_id=device_id, limit=limit, now=utcnow()
    )
