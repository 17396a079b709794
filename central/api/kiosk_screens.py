"""What kiosks' screens show: the latest screenshot each node sent (observer and up), and a fresh one on request
(operator). Screenshots are taken by the node through the kiosk browser's DevTools and arrive as ``screen``
snapshots."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, status
from sqlalchemy import select

from central.api.schemas import CommandView
from central.auth.deps import Principal, client_ip, require_role
from central.auth.roles import Role
from central.commands import CommandError
from central.deps import SessionDep, get_services
from central.services import Services
from central.store.fleet_models import DeviceStateRecord
from central.store.kiosk_screen_models import KioskScreenshot
from varta.contract import ID_PATTERN, CameraRef, CommandType, DeviceKind

router = APIRouter(prefix="/api/v1/kiosk/kiosks", tags=["kiosks"])

NodeId = Annotated[str, Path(pattern=ID_PATTERN, description="the kiosk's node id")]
Observer = Annotated[Principal, Depends(require_role(Role.OBSERVER))]
Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
ServicesDep = Annotated[Services, Depends(get_services)]


@router.get(
    "/{node_id}/screenshot",
    response_class=Response,
    summary="The latest screenshot of the kiosk's screen (JPEG)",
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "no screenshot yet"}},
)
async def latest_screenshot(node_id: NodeId, session: SessionDep, _: Observer) -> Response:
    """The newest screenshot; ``X-Taken-At`` says when the node took it."""
    row = await session.scalar(
        select(KioskScreenshot)
        .where(KioskScreenshot.node_id == node_id)
        .order_by(KioskScreenshot.taken_at.desc(), KioskScreenshot.id.desc())
        .limit(1)
    )
    if row is None:
        raise HTTPException(404, f"no screenshot of kiosk {node_id} yet")
    return Response(
        row.data,
        media_type="image/jpeg",
        headers={
            "Cache-Control": "no-store",
            "X-Taken-At": row.taken_at.isoformat(),
            "X-Width": str(row.width),
            "X-Height": str(row.height),
        },
    )


@router.post(
    "/{node_id}/screenshot",
    response_model=CommandView,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Ask the kiosk's node for a fresh screenshot",
    responses={404: {"description": "not a kiosk"}, 409: {"description": "the node is offline"}},
)
async def request_screenshot(
    node_id: NodeId, request: Request, session: SessionDep, principal: Operator, services: ServicesDep
) -> CommandView:
    """Send ``kiosk.screenshot``; the picture arrives through ingest (fetch it with GET a few seconds later)."""
    device_id = await session.scalar(
        select(DeviceStateRecord.device_id).where(
            DeviceStateRecord.node_id == node_id, DeviceStateRecord.kind == DeviceKind.KIOSK.value
        )
    )
    if device_id is None:
        raise HTTPException(404, f"node {node_id} has no kiosk")
    if services.commands is None:
        raise HTTPException(503, "commands are not available (no broker connection configured)")
    try:
        return await services.commands.send(
            session,
            node_id=node_id,
            command=CommandType.KIOSK_SCREENSHOT.value,
            params=CameraRef(device_id=device_id).model_dump(mode="json"),
            issued_by=principal.username,
            ttl_s=60,
            ip=client_ip(request),
        )
    except CommandError as exc:
        raise HTTPException(exc.status, exc.detail) from None
