"""Camera part of the ingest: camera info, snapshots, discovery reports and the camera mirror of device states.

Called by :class:`central.ingest.service.IngestService` inside its batch transaction, with messages that already
passed the contract and the ``(node, boot, seq)`` de-duplication, so every step here is idempotent per message.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from central.bus import Bus
from central.store.camera_models import Camera, CameraSnapshot, DiscoveredDeviceRecord
from central.store.camera_queries import camera_view
from central.store.fleet_models import DeviceStateRecord, Node
from central.store.kiosk_screen_models import KioskScreenshot
from varta.contract import (
    CameraInfo,
    ContractError,
    DeviceKind,
    DiscoveryReport,
    Envelope,
    RejectReason,
    Snapshot,
)

log = structlog.get_logger(__name__)

#: Pictures kept per camera (the newest ones).
SNAPSHOTS_KEPT = 3
_JPEG_MAGIC = b"\xff\xd8\xff"


def snapshot_bytes(message: Snapshot) -> bytes:
    """The JPEG a snapshot carries; :class:`ContractError` (``invalid_schema``) if it is not a base64 JPEG."""
    try:
        data = base64.b64decode(message.data, validate=True)
    except (binascii.Error, ValueError):
        raise ContractError(RejectReason.INVALID_SCHEMA, "data: snapshot is not base64") from None
    if not data.startswith(_JPEG_MAGIC):
        raise ContractError(RejectReason.INVALID_SCHEMA, "data: snapshot is not a JPEG")
    return data


def check_message(message: Envelope) -> None:
    """Checks beyond the schema for camera messages (raises :class:`ContractError`)."""
    if isinstance(message, Snapshot):
        snapshot_bytes(message)


@dataclass
class CameraChanges:
    """What one batch changed for cameras (announced on the bus after commit)."""

    cameras: dict[tuple[str, str], Camera] = field(default_factory=dict)
    discovery_nodes: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.cameras or self.discovery_nodes)


async def _camera(
    session: AsyncSession, changes: CameraChanges, node_id: str, device_id: str, site: str, now: datetime
) -> Camera:
    key = (node_id, device_id)
    camera = changes.cameras.get(key) or await session.get(Camera, key)
    if camera is None:
        # A camera the node looks after that central has not adopted (configured on the node itself).
        camera = Camera(
            node_id=node_id,
            device_id=device_id,
            site=site,
            name="",
            position="",
            status="unknown",
            detail="",
            attrs={},
            created_at=now,
        )
        session.add(camera)
    changes.cameras[key] = camera
    return camera


def _info_is_newer(message: CameraInfo, camera: Camera) -> bool:
    if camera.info_at is None:
        return True
    if message.boot_id == camera.info_boot_id and camera.info_seq is not None:
        return message.seq > camera.info_seq
    return message.ts >= camera.info_at


async def store_infos(
    session: AsyncSession, items: list[tuple[CameraInfo, str, datetime]], changes: CameraChanges
) -> None:
    """Keep each camera's latest :class:`CameraInfo` (everything but the envelope)."""
    for message, site, received_at in items:
        camera = await _camera(session, changes, message.node_id, message.device_id, site, received_at)
        if not _info_is_newer(message, camera):
            continue
        camera.info = message.model_dump(
            mode="json", exclude={"v", "type", "node_id", "boot_id", "seq", "ts", "historical"}
        )
        camera.info_at = message.ts
        camera.info_boot_id = message.boot_id
        camera.info_seq = message.seq
        if not camera.name and message.name:
            camera.name = message.name


async def mirror_states(
    session: AsyncSession, states: list[tuple[str, DeviceStateRecord, str]], changes: CameraChanges
) -> None:
    """Copy the stored state of camera devices (status, reason, detail, attrs) onto their camera rows."""
    for node_id, state, site in states:
        if state.kind != DeviceKind.CAMERA.value:
            continue
        camera = await _camera(session, changes, node_id, state.device_id, site, state.updated_at)
        if camera.status != state.status or camera.reason != state.reason or camera.status_since is None:
            camera.status_since = state.status_since
        camera.status = state.status
        camera.reason = state.reason
        camera.detail = state.detail
        camera.attrs = dict(state.attrs or {})
        camera.state_at = state.ts
        if not camera.name and state.name:
            camera.name = state.name


async def store_screenshots(session: AsyncSession, items: list[tuple[Snapshot, str, datetime]]) -> None:
    """Store what kiosks' screens showed (``source: screen``); keep the newest :data:`SNAPSHOTS_KEPT` per kiosk."""
    touched: set[tuple[str, str]] = set()
    for message, _, received_at in items:
        session.add(
            KioskScreenshot(
                node_id=message.node_id,
                device_id=message.device_id,
                taken_at=message.taken_at,
                received_at=received_at,
                purpose=message.purpose,
                width=message.width,
                height=message.height,
                data=snapshot_bytes(message),
            )
        )
        touched.add((message.node_id, message.device_id))
    await session.flush()
    await _keep_newest(session, KioskScreenshot, touched)


async def _keep_newest(
    session: AsyncSession, model: type[CameraSnapshot] | type[KioskScreenshot], devices: set[tuple[str, str]]
) -> None:
    """Delete all but the newest :data:`SNAPSHOTS_KEPT` pictures of each (node, device) in *devices*."""
    for node_id, device_id in devices:
        keep = (
            select(model.id)
            .where(model.node_id == node_id, model.device_id == device_id)
            .order_by(model.taken_at.desc(), model.id.desc())
            .limit(SNAPSHOTS_KEPT)
        )
        kept = list((await session.scalars(keep)).all())
        await session.execute(
            delete(model).where(model.node_id == node_id, model.device_id == device_id, model.id.not_in(kept))
        )


async def store_snapshots(
    session: AsyncSession, items: list[tuple[Snapshot, str, datetime]], changes: CameraChanges
) -> None:
    """Store pictures; keep the newest :data:`SNAPSHOTS_KEPT` per camera (kiosk screenshots go to their own table)."""
    screens = [item for item in items if item[0].source == "screen"]
    if screens:
        await store_screenshots(session, screens)
    touched: set[tuple[str, str]] = set()
    for message, site, received_at in items:
        if message.source == "screen":
            continue
        camera = await _camera(session, changes, message.node_id, message.device_id, site, received_at)
        session.add(
            CameraSnapshot(
                node_id=message.node_id,
                device_id=message.device_id,
                taken_at=message.taken_at,
                received_at=received_at,
                source=message.source,
                purpose=message.purpose,
                content_type=message.content_type,
                width=message.width,
                height=message.height,
                data=snapshot_bytes(message),
            )
        )
        if camera.snapshot_at is None or message.taken_at >= camera.snapshot_at:
            camera.snapshot_at = message.taken_at
        touched.add((message.node_id, message.device_id))
    if touched:
        await session.flush()
        await _keep_newest(session, CameraSnapshot, touched)


async def store_discoveries(
    session: AsyncSession, items: list[tuple[DiscoveryReport, str, datetime]], changes: CameraChanges
) -> None:
    """Add what a node's probe found to the inbox (a device seen again keeps its state: new, ignored, adopted)."""
    for report, site, _received_at in items:
        adopted_endpoints = {
            endpoint: device_id
            for endpoint, device_id in (
                await session.execute(
                    select(Camera.endpoint, Camera.device_id).where(
                        Camera.node_id == report.node_id, Camera.endpoint.is_not(None)
                    )
                )
            ).all()
        }
        for device in report.devices:
            row = (
                await session.scalars(
                    select(DiscoveredDeviceRecord).where(
                        DiscoveredDeviceRecord.node_id == report.node_id,
                        DiscoveredDeviceRecord.endpoint == device.endpoint,
                    )
                )
            ).first()
            if row is None:
                adopted_as = adopted_endpoints.get(device.endpoint)
                row = DiscoveredDeviceRecord(
                    node_id=report.node_id,
                    site=site,
                    endpoint=device.endpoint,
                    first_seen=report.ts,
                    last_seen=report.ts,
                    state="adopted" if adopted_as else "new",
                    device_id=adopted_as,
                )
                session.add(row)
            elif report.ts < row.last_seen:
                continue  # an older report replayed late: what we have is newer
            row.site = site
            row.address = device.address
            row.xaddrs = list(device.xaddrs)
            row.scopes = list(device.scopes)
            row.types = list(device.types)
            row.name = device.name
            row.hardware = device.hardware
            row.last_seen = report.ts
        changes.discovery_nodes.add(report.node_id)
        log.info("ingest.discovery", node_id=report.node_id, found=len(report.devices), trigger=report.trigger)


async def announce(session: AsyncSession, bus: Bus, changes: CameraChanges) -> None:
    """Publish changed cameras (``camera``) and inbox changes (``discovery``) on the bus."""
    if not changes:
        return
    nodes = {node_id for node_id, _ in changes.cameras} | changes.discovery_nodes
    online = {
        n: bool(o)
        for n, o in (await session.execute(select(Node.node_id, Node.online).where(Node.node_id.in_(sorted(nodes)))))
    }
    for (node_id, _), camera in sorted(changes.cameras.items()):
        bus.publish("camera", camera_view(camera, online.get(node_id, False)).model_dump(mode="json"))
    for node_id in sorted(changes.discovery_nodes):
        bus.publish("discovery", {"node_id": node_id})
