"""Read queries behind the camera API, the camera pages and the ``camera`` SSE event."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from central.api.camera_schemas import CameraDetail, CameraInfoView, CameraView, DiscoveredView, StatusChange
from central.api.schemas import EventView
from central.store.camera_models import Camera, CameraSnapshot, DiscoveredDeviceRecord
from central.store.fleet_models import EventRecord, Node
from varta.contract import utcnow

#: Order of the wall: what is down first, then what is degraded, then the rest.
STATUS_ORDER = {"offline": 0, "degraded": 1, "unknown": 2, "online": 3}


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def camera_view(camera: Camera, node_online: bool = True) -> CameraView:
    """The wall's view of one camera."""
    info = camera.info or {}
    attrs = camera.attrs or {}
    width, height = _number(attrs.get("width")), _number(attrs.get("height"))
    return CameraView(
        node_id=camera.node_id,
        device_id=camera.device_id,
        site=camera.site,
        name=camera.name or str(info.get("name") or "") or camera.device_id,
        position=camera.position,
        latitude=camera.latitude,
        longitude=camera.longitude,
        status=camera.status,
        reason=camera.reason,
        detail=camera.detail,
        status_since=camera.status_since,
        state_at=camera.state_at,
        snapshot_at=camera.snapshot_at,
        adopted_at=camera.adopted_at,
        node_online=node_online,
        manufacturer=str(info.get("manufacturer") or ""),
        model=str(info.get("model") or ""),
        ptz=bool(info.get("ptz")),
        width=int(width) if width is not None else None,
        height=int(height) if height is not None else None,
        fps=_number(attrs.get("fps")),
    )


def camera_detail(camera: Camera, node_online: bool = True, now: datetime | None = None) -> CameraDetail:
    """One camera with its ONVIF description."""
    view = camera_view(camera, node_online)
    age = ((now or utcnow()) - camera.snapshot_at).total_seconds() if camera.snapshot_at else None
    return CameraDetail(
        **view.model_dump(),
        info=CameraInfoView.from_stored(camera.info),
        info_at=camera.info_at,
        attrs=dict(camera.attrs or {}),
        snapshot_age_s=age,
    )


async def _online_nodes(session: AsyncSession, node_ids: set[str]) -> dict[str, bool]:
    if not node_ids:
        return {}
    rows = await session.execute(select(Node.node_id, Node.online).where(Node.node_id.in_(sorted(node_ids))))
    return {node_id: bool(online) for node_id, online in rows.all()}


async def list_cameras(
    session: AsyncSession, *, site: str | None = None, status: str | None = None
) -> list[CameraView]:
    """Cameras (optionally of one site / in one status): offline first, then degraded, then by site and name."""
    stmt = select(Camera)
    if site is not None:
        stmt = stmt.where(Camera.site == site)
    if status is not None:
        stmt = stmt.where(Camera.status == status)
    cameras = (await session.scalars(stmt)).all()
    online = await _online_nodes(session, {c.node_id for c in cameras})
    views = [camera_view(c, online.get(c.node_id, False)) for c in cameras]
    views.sort(key=lambda v: (STATUS_ORDER.get(v.status, 2), v.site, v.name.lower(), v.device_id))
    return views


async def get_camera(session: AsyncSession, node_id: str, device_id: str) -> Camera | None:
    """The stored camera row, or None."""
    return await session.get(Camera, (node_id, device_id))


async def camera_detail_of(session: AsyncSession, node_id: str, device_id: str) -> CameraDetail | None:
    """One camera's detail view, or None."""
    camera = await get_camera(session, node_id, device_id)
    if camera is None:
        return None
    online = await _online_nodes(session, {node_id})
    return camera_detail(camera, online.get(node_id, False))


async def latest_snapshot(session: AsyncSession, node_id: str, device_id: str) -> CameraSnapshot | None:
    """The newest stored picture of a camera."""
    stmt = (
        select(CameraSnapshot)
        .where(CameraSnapshot.node_id == node_id, CameraSnapshot.device_id == device_id)
        .order_by(CameraSnapshot.taken_at.desc(), CameraSnapshot.id.desc())
        .limit(1)
    )
    return (await session.scalars(stmt)).first()


async def status_history(
    session: AsyncSession, node_id: str, device_id: str, *, since: datetime, limit: int = 500
) -> list[StatusChange]:
    """Status changes of a camera since *since*, oldest first.

    Both the node (``camera.status`` events) and central (from each change of the device state) record changes;
    consecutive entries with the same status and reason are one change.
    """
    stmt = (
        select(EventRecord)
        .where(
            EventRecord.node_id == node_id,
            EventRecord.device_id == device_id,
            EventRecord.kind == "camera.status",
            EventRecord.ts >= since,
        )
        .order_by(EventRecord.ts.desc(), EventRecord.id.desc())
        .limit(limit)
    )
    rows = list(reversed((await session.scalars(stmt)).all()))
    changes: list[StatusChange] = []
    for row in rows:
        data = row.data or {}
        status = str(data.get("status") or "unknown")
        reason = data.get("reason")
        reason = str(reason) if reason else None
        if changes and changes[-1].status == status and changes[-1].reason == reason:
            continue
        changes.append(StatusChange(ts=row.ts, status=status, reason=reason, message=row.message))
    return changes


async def camera_events(session: AsyncSession, node_id: str, device_id: str, limit: int = 50) -> list[EventView]:
    """A camera's events, newest first."""
    stmt = (
        select(EventRecord)
        .where(EventRecord.node_id == node_id, EventRecord.device_id == device_id)
        .order_by(EventRecord.id.desc())
        .limit(limit)
    )
    return [EventView.model_validate(r) for r in (await session.scalars(stmt)).all()]


async def discovered(
    session: AsyncSession, *, state: str | None = None, node_id: str | None = None
) -> list[DiscoveredView]:
    """The discovery inbox: newest sightings first (optionally one state / one node)."""
    stmt = select(DiscoveredDeviceRecord).order_by(
        DiscoveredDeviceRecord.last_seen.desc(), DiscoveredDeviceRecord.id.desc()
    )
    if state is not None:
        stmt = stmt.where(DiscoveredDeviceRecord.state == state)
    if node_id is not None:
        stmt = stmt.where(DiscoveredDeviceRecord.node_id == node_id)
    rows = (await session.scalars(stmt)).all()
    keys: dict[str, bool] = {}
    if rows:
        result = await session.execute(
            select(Node.node_id, Node.box_public_key).where(Node.node_id.in_(sorted({r.node_id for r in rows})))
        )
        keys = {n: bool(k) for n, k in result.all()}
    return [
        DiscoveredView.model_validate(r).model_copy(update={"node_can_seal": keys.get(r.node_id, False)}) for r in rows
    ]
