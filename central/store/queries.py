"""Read queries behind the fleet API, the dashboard and the SSE stream."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from central.api.schemas import (
    CommandView,
    DeviceView,
    EventView,
    HealthPoint,
    NodeView,
    SeqGapView,
    SiteView,
)
from central.store.fleet_models import (
    CommandRecord,
    DeviceStateRecord,
    EventRecord,
    HealthSample,
    Node,
    SeqGap,
)


def health_point(data: dict[str, object] | None) -> HealthPoint | None:
    """The stored ``last_health`` JSON of a node as a :class:`HealthPoint` (None when absent or unreadable)."""
    if not data:
        return None
    try:
        return HealthPoint.model_validate(data)
    except ValueError:
        return None


def node_view(node: Node, devices: list[DeviceStateRecord]) -> NodeView:
    """Assemble a :class:`NodeView`."""
    return NodeView(
        node_id=node.node_id,
        site=node.site,
        name=node.name,
        online=node.online,
        offline_reason=node.offline_reason,
        status_since=node.status_since,
        last_seen=node.last_seen,
        hostname=node.hostname,
        version=node.version,
        boot_id=node.boot_id,
        started_at=node.started_at,
        health_interval_s=node.health_interval_s,
        last_health=health_point(node.last_health),
        devices=[DeviceView.model_validate(d) for d in sorted(devices, key=lambda d: d.device_id)],
    )


async def list_nodes(session: AsyncSession, *, site: str | None = None) -> list[NodeView]:
    """All nodes (optionally of one site), offline first, then by site and id."""
    stmt = select(Node)
    if site is not None:
        stmt = stmt.where(Node.site == site)
    nodes = (await session.scalars(stmt)).all()
    dev_stmt = select(DeviceStateRecord)
    if site is not None:
        dev_stmt = dev_stmt.where(DeviceStateRecord.node_id.in_([n.node_id for n in nodes]))
    by_node: dict[str, list[DeviceStateRecord]] = defaultdict(list)
    for dev in (await session.scalars(dev_stmt)).all():
        by_node[dev.node_id].append(dev)
    views = [node_view(n, by_node.get(n.node_id, [])) for n in nodes]
    views.sort(key=lambda v: (v.online, v.site, v.node_id))
    return views


async def fleet(session: AsyncSession) -> list[SiteView]:
    """Sites with their nodes; sites with offline nodes first."""
    by_site: dict[str, list[NodeView]] = defaultdict(list)
    for view in await list_nodes(session):
        by_site[view.site].append(view)
    sites = [
        SiteView(
            site=site,
            nodes=nodes,
            online=sum(1 for n in nodes if n.online),
            offline=sum(1 for n in nodes if not n.online),
        )
        for site, nodes in by_site.items()
    ]
    sites.sort(key=lambda s: (s.offline == 0, s.site))
    return sites


async def node_detail(session: AsyncSession, node_id: str) -> NodeView | None:
    """One node with its devices, or None."""
    node = await session.get(Node, node_id)
    if node is None:
        return None
    devices = (await session.scalars(select(DeviceStateRecord).where(DeviceStateRecord.node_id == node_id))).all()
    return node_view(node, list(devices))


async def health_history(
    session: AsyncSession, node_id: str, since: datetime, *, limit: int = 5000
) -> list[HealthPoint]:
    """Health samples of a node since *since*, oldest first (at most *limit*, the newest ones)."""
    stmt = (
        select(HealthSample)
        .where(HealthSample.node_id == node_id, HealthSample.ts >= since)
        .order_by(HealthSample.ts.desc())
        .limit(limit)
    )
    rows = (await session.scalars(stmt)).all()
    return [HealthPoint.model_validate(r) for r in reversed(rows)]


async def node_events(
    session: AsyncSession, node_id: str | None = None, limit: int = 100, before_id: int | None = None
) -> list[EventView]:
    """Newest events first (of one node, or of all), paged with *before_id*."""
    stmt = select(EventRecord).order_by(EventRecord.id.desc()).limit(limit)
    if node_id is not None:
        stmt = stmt.where(EventRecord.node_id == node_id)
    if before_id is not None:
        stmt = stmt.where(EventRecord.id < before_id)
    return [EventView.model_validate(r) for r in (await session.scalars(stmt)).all()]


async def seq_gaps(session: AsyncSession, node_id: str, limit: int = 100) -> list[SeqGapView]:
    """Recorded sequence gaps of a node, newest first."""
    stmt = select(SeqGap).where(SeqGap.node_id == node_id).order_by(SeqGap.id.desc()).limit(limit)
    return [SeqGapView.model_validate(r) for r in (await session.scalars(stmt)).all()]


async def node_commands(session: AsyncSession, node_id: str, limit: int = 50) -> list[CommandView]:
    """Commands sent to a node, newest first."""
    stmt = (
        select(CommandRecord)
        .where(CommandRecord.node_id == node_id)
        .order_by(CommandRecord.issued_at.desc())
        .limit(limit)
    )
    return [CommandView.model_validate(r) for r in (await session.scalars(stmt)).all()]
