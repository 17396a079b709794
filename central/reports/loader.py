"""Loads what the availability report needs from the store: the devices it covers and their outages.

Nodes are observed from their ``first_seen``; cameras from their adoption (``cameras.created_at``) or their node's
``first_seen``, whichever is later; kiosks and sirens from their node's ``first_seen`` (central keeps no separate
first-seen time for them). A device that has outages but no current state (a camera forgotten since) is still
listed, under the kind its outages give.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from central.config import SiteSettings
from central.reports.availability import (
    REPORT_KINDS,
    REPORT_TZ,
    AvailabilityReport,
    OutageSpan,
    ReportDevice,
    compute_availability,
    month_period,
)
from central.store.camera_models import Camera
from central.store.fleet_models import DeviceStateRecord, Node
from central.store.incident_models import Outage


async def load_devices(session: AsyncSession) -> list[ReportDevice]:
    """Every node and every camera, kiosk and siren central knows of."""
    nodes = {n.node_id: n for n in (await session.scalars(select(Node))).all()}
    cameras = {(c.node_id, c.device_id): c for c in (await session.scalars(select(Camera))).all()}
    devices: dict[tuple[str, str], ReportDevice] = {}
    for node in nodes.values():
        devices[(node.node_id, "")] = ReportDevice(node.site, node.node_id, "", "node", node.name, node.first_seen)
    states = await session.scalars(select(DeviceStateRecord).where(DeviceStateRecord.kind.in_(REPORT_KINDS[1:])))
    for state in states.all():
        owner = nodes.get(state.node_id)
        if owner is None:
            continue
        first_seen = owner.first_seen
        camera = cameras.get((state.node_id, state.device_id))
        name = state.name
        if camera is not None:
            first_seen = max(first_seen, camera.created_at)
            name = camera.name or name
        devices[(state.node_id, state.device_id)] = ReportDevice(
            owner.site, state.node_id, state.device_id, state.kind, name, first_seen
        )
    for (node_id, device_id), camera in cameras.items():
        if (node_id, device_id) not in devices and node_id in nodes:
            first_seen = max(nodes[node_id].first_seen, camera.created_at)
            devices[(node_id, device_id)] = ReportDevice(
                camera.site, node_id, device_id, "camera", camera.name, first_seen
            )
    return list(devices.values())


async def load_outages(session: AsyncSession, start: datetime, end: datetime) -> list[tuple[Outage, OutageSpan]]:
    """Outages that overlap ``[start, end)`` (open ones included), with their plain spans."""
    rows = await session.scalars(
        select(Outage)
        .where(Outage.started_at < end, or_(Outage.ended_at.is_(None), Outage.ended_at > start))
        .order_by(Outage.started_at, Outage.id)
    )
    return [(o, OutageSpan(o.node_id, o.device_id, o.cause, o.started_at, o.ended_at)) for o in rows.all()]


async def availability_report(session: AsyncSession, month: date, now: datetime) -> AvailabilityReport:
    """The availability report of *month* (Europe/Kyiv) as of *now*, from the store."""
    start, end = month_period(month, REPORT_TZ)
    devices = await load_devices(session)
    outages = await load_outages(session, start, end)
    known = {d.key for d in devices}
    nodes = {d.node_id: d for d in devices if d.kind == "node"}
    for outage, _span in outages:
        key = (outage.node_id, outage.device_id)
        node = nodes.get(outage.node_id)
        if key in known or node is None or outage.kind not in REPORT_KINDS:
            continue
        devices.append(ReportDevice(outage.site, outage.node_id, outage.device_id, outage.kind, "", node.first_seen))
        known.add(key)
    return compute_availability(devices, [span for _o, span in outages], month, now, REPORT_TZ)


def site_names(sites: Mapping[str, SiteSettings]) -> dict[str, str]:
    """Site id → the name dispatchers know it by (the configured ``name``; sites without one are left out)."""
    return {site_id: settings.name for site_id, settings in sites.items() if settings.name}
