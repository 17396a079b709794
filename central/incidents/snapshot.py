"""Loads what the incident rules look at from the store, in one session (one consistent read)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from central.alerts.queries import periods_between, site_alerts
from central.config import CentralConfig
from central.incidents.rules import (
    SOUNDING,
    AlertFact,
    DeviceFact,
    NodeFact,
    OpenIncident,
    OpenOutage,
    SirenChange,
    Snapshot,
    parse_time,
)
from central.store.alert_models import AlertPeriod
from central.store.fleet_models import DeviceStateRecord, EventRecord, Node
from central.store.incident_models import Incident, Outage
from varta.contract import SIREN_CHANGED_EVENT, SirenChanged

log = structlog.get_logger(__name__)

#: How far back the end of a site's last alert is looked up (a siren sounding after an alert ended).
ALERT_END_LOOKBACK = timedelta(days=7)
#: Siren history read before the earliest alert start (a siren sounding since before the alert began).
SIREN_HISTORY_MARGIN = timedelta(hours=6)


@dataclass
class Loaded:
    """A snapshot and the ORM rows it was made from (the engine changes these)."""

    snapshot: Snapshot
    incidents: dict[int, Incident] = field(default_factory=dict)
    outages: dict[int, Outage] = field(default_factory=dict)
    bad_siren_events: int = 0

    def stored(self) -> dict[int, dict[str, Any]]:
        """The columns of each open incident that the diff compares besides the snapshot's."""
        return {i: {"title": r.title, "detail": r.detail, "severity": r.severity} for i, r in self.incidents.items()}


def _alert_fact(period: AlertPeriod) -> AlertFact:
    return AlertFact(
        id=period.id, started_at=period.started_at, ended_at=period.ended_at, region_name=period.region_name
    )


async def load(session: AsyncSession, config: CentralConfig, now: datetime) -> Loaded:
    """Read nodes, open incidents and outages, the device states that matter, alerts and siren history."""
    snap = Snapshot(now=now, site_names={site_id: s.name for site_id, s in config.sites.items() if s.name})
    for row in await session.execute(
        select(Node.node_id, Node.site, Node.name, Node.online, Node.offline_reason, Node.status_since)
    ):
        snap.nodes[row.node_id] = NodeFact(
            node_id=row.node_id,
            site=row.site,
            name=row.name,
            online=bool(row.online),
            offline_reason=row.offline_reason,
            status_since=row.status_since,
        )
    loaded = Loaded(snapshot=snap)
    for incident in (await session.scalars(select(Incident).where(Incident.ended_at.is_(None)))).all():
        loaded.incidents[incident.id] = incident
        snap.open_incidents.append(
            OpenIncident(
                id=incident.id,
                key=incident.key,
                type=incident.type,
                site=incident.site,
                node_id=incident.node_id,
                device_id=incident.device_id,
                started_at=incident.started_at,
                devices=tuple(incident.devices or ()),
                data=dict(incident.data or {}),
            )
        )
    for outage in (await session.scalars(select(Outage).where(Outage.ended_at.is_(None)))).all():
        loaded.outages[outage.id] = outage
        snap.open_outages.append(
            OpenOutage(
                id=outage.id,
                node_id=outage.node_id,
                device_id=outage.device_id,
                cause=outage.cause,
                started_at=outage.started_at,
                incident_id=outage.incident_id,
            )
        )
    # Only the device states the rules can use: sirens and UPSs, every device not plainly online, every device of
    # a node that is offline or named by an open incident or outage (to see it come back). A healthy camera of a
    # healthy node never matters, and most of a fleet is that.
    watched_nodes = {n.node_id for n in snap.nodes.values() if not n.online}
    watched_nodes.update(o.node_id for o in snap.open_outages)
    watched_nodes.update(i.node_id for i in snap.open_incidents if i.node_id)
    watched_nodes.update(ref.split("/", 1)[0] for i in snap.open_incidents for ref in i.devices)
    relevant = or_(
        DeviceStateRecord.kind.in_(("siren", "ups")),
        DeviceStateRecord.status != "online",
        DeviceStateRecord.node_id.in_(sorted(watched_nodes)),
    )
    for row in await session.execute(
        select(
            DeviceStateRecord.node_id,
            DeviceStateRecord.device_id,
            DeviceStateRecord.kind,
            DeviceStateRecord.name,
            DeviceStateRecord.status,
            DeviceStateRecord.reason,
            DeviceStateRecord.status_since,
            DeviceStateRecord.attrs,
        ).where(relevant)
    ):
        attrs = row.attrs if isinstance(row.attrs, dict) and row.kind in ("siren", "ups") else {}
        snap.devices[(row.node_id, row.device_id)] = DeviceFact(
            node_id=row.node_id,
            device_id=row.device_id,
            kind=row.kind,
            name=row.name,
            status=row.status,
            reason=row.reason,
            status_since=row.status_since,
            attrs=attrs,
        )
    await _load_alerts(session, config, loaded)
    await _load_siren_history(session, loaded)
    return loaded


async def _load_alerts(session: AsyncSession, config: CentralConfig, loaded: Loaded) -> None:
    snap = loaded.snapshot
    if config.sites:
        for site_id, periods in (await site_alerts(session, config.sites)).items():
            if periods:
                snap.alerts[site_id] = [_alert_fact(p) for p in periods]
    failing = [i for i in snap.open_incidents if i.type == "siren_failure"]
    ids = {int(i.data["alert_period_id"]) for i in failing if isinstance(i.data.get("alert_period_id"), int)}
    if ids:
        for period in (await session.scalars(select(AlertPeriod).where(AlertPeriod.id.in_(ids)))).all():
            snap.periods[period.id] = _alert_fact(period)
    # The end of the last alert matters to a siren sounding at a calm site, and to closing a siren_failure.
    calm: set[str] = set()
    for (node_id, _), device in snap.devices.items():
        node = snap.nodes.get(node_id)
        if device.kind == "siren" and device.reason == SOUNDING and node is not None and node.site not in snap.alerts:
            calm.add(node.site)
    calm.update(i.site for i in failing if i.site not in snap.alerts)
    for site_id in sorted(calm):
        site = config.sites.get(site_id)
        if site is None or not site.regions:
            continue
        periods = await periods_between(session, snap.now - ALERT_END_LOOKBACK, snap.now, site.regions)
        ends = [p.ended_at for p in periods if p.ended_at is not None and p.ended_at <= snap.now]
        if ends:
            snap.last_alert_end[site_id] = max(ends)


async def _load_siren_history(session: AsyncSession, loaded: Loaded) -> None:
    snap = loaded.snapshot
    starts: list[datetime] = [a.started_at for periods in snap.alerts.values() for a in periods]
    for incident in snap.open_incidents:
        if incident.type == "siren_failure":
            starts.append(parse_time(incident.data.get("alert_started_at")) or incident.started_at)
    sirens = _sirens_to_watch(snap)
    if not starts or not sirens:
        return
    nodes = sorted({node_id for node_id, _ in sirens})
    rows = await session.execute(
        select(EventRecord.node_id, EventRecord.device_id, EventRecord.data)
        .where(
            EventRecord.kind == SIREN_CHANGED_EVENT,
            EventRecord.ts >= min(starts) - SIREN_HISTORY_MARGIN,
            EventRecord.node_id.in_(nodes),
        )
        .order_by(EventRecord.id)
    )
    for row in rows:
        ref = (row.node_id, row.device_id or "")
        if ref not in sirens:
            continue
        try:
            data = SirenChanged.model_validate(row.data)
        except ValidationError:
            loaded.bad_siren_events += 1
            continue
        snap.siren_changes.setdefault(ref, []).append(
            SirenChange(
                at=_aware(data.changed_at),
                state=data.state.value,
                previous=data.previous.value,
                previous_since=_aware(data.previous_since) if data.previous_since is not None else None,
            )
        )
    for changes in snap.siren_changes.values():
        changes.sort(key=lambda c: c.at)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _sirens_to_watch(snap: Snapshot) -> set[tuple[str, str]]:
    watched: set[tuple[str, str]] = set()
    for (node_id, device_id), device in snap.devices.items():
        node = snap.nodes.get(node_id)
        if device.kind == "siren" and node is not None and node.site in snap.alerts:
            watched.add((node_id, device_id))
    watched.update((i.node_id or "", i.device_id or "") for i in snap.open_incidents if i.type == "siren_failure")
    return watched


__all__ = ["Loaded", "load"]
