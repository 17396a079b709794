"""Builders for the incident tests: a fleet written straight into the store, and an engine over it.

(This module holds no tests.) Times are explicit: every row gets the time the test says, and evaluations run with
an injected ``now``, so the rules' delays are checked without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from central.bus import Bus, BusEvent
from central.config import CentralConfig, IncidentSettings, NotificationSettings, SiteSettings
from central.incidents.engine import IncidentEngine
from central.store.alert_models import AlertPeriod
from central.store.db import Database
from central.store.fleet_models import DeviceStateRecord, EventRecord, Node
from central.store.incident_models import Incident, NotificationDelivery, Outage
from varta.contract import SIREN_CHANGED_EVENT

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
HROMADA = "UA-74-HROMADA-VYSHNEVE"
OBLAST = "UA-74"
SITES = {
    "vyshneve": SiteSettings(name="Vyshneve village", regions=[OBLAST, HROMADA]),
    "lisove": SiteSettings(name="Lisove", regions=["UA-12", "UA-12-HROMADA-LISOVE"]),
}


def at(seconds: float) -> datetime:
    """T0 plus *seconds*."""
    return T0 + timedelta(seconds=seconds)


def make_config(database_url: str, **overrides: Any) -> CentralConfig:
    """A central config for the engine: two sites, English texts, the default delays unless overridden."""
    data: dict[str, Any] = {
        "database_url": database_url,
        "sites": SITES,
        "default_language": "en",
        "incidents": IncidentSettings(),
        "notifications": NotificationSettings(),
    }
    data.update(overrides)
    return CentralConfig(**data)


@dataclass
class Fleet:
    """Writes nodes, device states, alerts and siren events the way ingest and the alert poller leave them."""

    db: Database
    _siren_seq: int = 0
    published: list[BusEvent] = field(default_factory=list)

    async def node(
        self,
        node_id: str,
        site: str = "vyshneve",
        *,
        online: bool = True,
        reason: str | None = None,
        since: datetime = T0,
        name: str = "",
    ) -> None:
        """Create or change a node's availability."""
        async with self.db.session() as s:
            node = await s.get(Node, node_id)
            if node is None:
                node = Node(node_id=node_id, site=site, name=name, first_seen=T0 - timedelta(days=1), boot_id="b1")
                s.add(node)
            node.online = online
            node.offline_reason = None if online else reason
            node.status_since = since
            await s.commit()

    async def device(
        self,
        node_id: str,
        device_id: str,
        kind: str,
        status: str = "online",
        reason: str | None = None,
        *,
        since: datetime = T0,
        attrs: dict[str, Any] | None = None,
        name: str = "",
    ) -> None:
        """Create or change a device's current state."""
        async with self.db.session() as s:
            row = await s.get(DeviceStateRecord, (node_id, device_id))
            if row is None:
                row = DeviceStateRecord(node_id=node_id, device_id=device_id, boot_id="b1", seq=1, ts=since)
                s.add(row)
            row.kind = kind
            row.name = name
            row.status = status
            row.reason = reason
            row.detail = ""
            row.attrs = attrs or {}
            row.status_since = since
            row.ts = since
            row.updated_at = since
            await s.commit()

    async def ups(self, node_id: str, reason: str, *, since: datetime = T0) -> None:
        """The node's UPS state (``on_line``, ``on_battery``, ``low_battery``)."""
        status = "online" if reason == "on_line" else "degraded"
        await self.device(node_id, "ups", "ups", status, reason, since=since)

    async def siren(self, node_id: str, device_id: str, state: str, *, since: datetime = T0, **attrs: Any) -> None:
        """The siren's state (status from the contract's mapping)."""
        status = {"idle": "online", "sounding": "online", "fault": "degraded", "unpowered": "offline"}.get(
            state, "unknown"
        )
        await self.device(node_id, device_id, "siren", status, state, since=since, attrs=attrs)

    async def siren_changed(
        self, node_id: str, device_id: str, state: str, previous: str, changed_at: datetime, previous_since: datetime
    ) -> None:
        """A ``siren.state_changed`` event in the event log."""
        self._siren_seq += 1
        data = {
            "state": state,
            "previous": previous,
            "changed_at": changed_at.isoformat(),
            "previous_since": previous_since.isoformat(),
            "previous_duration_s": (changed_at - previous_since).total_seconds(),
            "inputs": {"supply": True, "contactor": state == "sounding", "fault": False},
            "detail": "",
        }
        async with self.db.session() as s:
            node = await s.get(Node, node_id)
            s.add(
                EventRecord(
                    node_id=node_id,
                    site=node.site if node else "",
                    boot_id="b1",
                    seq=1000 + self._siren_seq,
                    ts=changed_at,
                    received_at=changed_at,
                    source="node",
                    kind=SIREN_CHANGED_EVENT,
                    severity="info",
                    device_id=device_id,
                    message="",
                    data=data,
                )
            )
            await s.commit()

    async def alert(
        self, region: str = HROMADA, *, started: datetime = T0, ended: datetime | None = None, name: str = "Vyshneve"
    ) -> int:
        """An official alert period (open unless *ended*)."""
        async with self.db.session() as s:
            period = AlertPeriod(
                source="alerts_in_ua",
                source_id=f"{region}-{started.isoformat()}",
                region_uid=region,
                region_name=name,
                region_type="hromada",
                oblast_uid=region.split("-HROMADA", maxsplit=1)[0],
                alert_type="air_raid",
                started_at=started,
                ended_at=ended,
                updated_at=started,
            )
            s.add(period)
            await s.commit()
            return period.id

    async def end_alert(self, period_id: int, ended: datetime) -> None:
        async with self.db.session() as s:
            period = await s.get(AlertPeriod, period_id)
            assert period is not None
            period.ended_at = ended
            await s.commit()

    async def incidents(self, state: str = "all") -> list[Incident]:
        """Incidents in id order."""
        async with self.db.session() as s:
            query = select(Incident).order_by(Incident.id)
            if state == "open":
                query = query.where(Incident.ended_at.is_(None))
            elif state == "closed":
                query = query.where(Incident.ended_at.is_not(None))
            return list((await s.scalars(query)).all())

    async def outages(self) -> list[Outage]:
        """Outages in (node, device, start) order."""
        async with self.db.session() as s:
            query = select(Outage).order_by(Outage.node_id, Outage.device_id, Outage.started_at, Outage.id)
            return list((await s.scalars(query)).all())

    async def deliveries(self) -> list[NotificationDelivery]:
        async with self.db.session() as s:
            return list((await s.scalars(select(NotificationDelivery).order_by(NotificationDelivery.id))).all())


def engine_for(config: CentralConfig, db: Database, bus: Bus | None = None) -> IncidentEngine:
    """An engine over *db* (its own bus unless given)."""
    return IncidentEngine(config, db, bus or Bus())
