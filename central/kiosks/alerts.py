"""Official alerts to kiosks: every kiosk of a site an alert covers is told, and told again when it changes; and
content a kiosk has not confirmed is sent again once it is back.

:class:`KioskAlertDispatcher` is level-triggered: on every alert or node change (and every ``interval_s``) it works
out, per node that announced the ``kiosk`` capability, the set of open alert periods covering the node's site
(``sites.<id>.regions``), and sends a signed ``kiosk.alerts.set`` with the whole set when it differs from what that
node (in its current boot) was last sent. An empty set is the all-clear. Lost commands are mended by the next
change or the node's restart; the node decides the screen itself, so it also works without this (local sirens).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import structlog
from sqlalchemy import select

from central.alerts.queries import site_alerts
from central.bus import Bus
from central.commands import CommandError, CommandService
from central.config import CentralConfig
from central.kiosks.publish import KioskPublisher
from central.store.db import Database
from central.store.fleet_models import DeviceStateRecord, Node
from varta.contract import CommandType, DeviceKind, KioskAlert, KioskAlertsParams

log = structlog.get_logger(__name__)

ISSUED_BY = "system:kiosk-alerts"
COMMAND_TTL_S = 120


class KioskAlertDispatcher:
    """See the module docstring."""

    def __init__(
        self,
        config: CentralConfig,
        db: Database,
        bus: Bus,
        commands: CommandService,
        *,
        publisher: KioskPublisher | None = None,
        interval_s: float = 30.0,
        redeliver_after_s: float = 600.0,
    ) -> None:
        self.config = config
        self.publisher = publisher
        """Also sends each kiosk the newest content it has not confirmed (it was offline, or the command expired)."""
        self.redeliver_after_s = redeliver_after_s
        self.redelivered = 0
        self.db = db
        self.commands = commands
        self.interval_s = interval_s
        self._sent: dict[str, tuple[str, tuple[KioskAlert, ...]]] = {}
        self._wake = asyncio.Event()
        bus.watch(self._on_change)
        self.sent = 0
        self.errors: Counter[str] = Counter()

    def _on_change(self, kind: str) -> None:
        if kind in ("alert", "node"):
            self._wake.set()

    async def run(self) -> None:
        """Keep every kiosk's alerts up to date until cancelled."""
        while True:
            self._wake.clear()
            await self.sync_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)

    async def sync_once(self) -> int:
        """Send what changed; returns how many commands were sent."""
        async with self.db.session() as session:
            online = (await session.scalars(select(Node).where(Node.online))).all()
            nodes = [(n.node_id, n.site, n.boot_id) for n in online if "kiosk" in n.capabilities]
            if not nodes:
                return 0
            kiosks = await session.execute(
                select(DeviceStateRecord.node_id, DeviceStateRecord.device_id).where(
                    DeviceStateRecord.kind == DeviceKind.KIOSK.value,
                    DeviceStateRecord.node_id.in_([node_id for node_id, _, _ in nodes]),
                )
            )
            device_of = {node_id: device_id for node_id, device_id in kiosks.all()}
            by_site = {
                site: tuple(
                    KioskAlert(alert_id=f"alert-{p.id}", region=p.region_name, started_at=p.started_at) for p in periods
                )
                for site, periods in (await site_alerts(session, self.config.sites)).items()
            }
            await session.rollback()  # read-only: end the transaction before sending
        sent = 0
        for node_id, site, boot_id in nodes:
            device_id = device_of.get(node_id)
            if device_id is None:
                continue  # the kiosk has not reported yet: its first state wakes us again
            if self.publisher is not None:
                try:
                    if await self.publisher.redeliver(
                        self.commands, node_id, device_id, older_than_s=self.redeliver_after_s
                    ):
                        self.redelivered += 1
                except Exception:  # content must never hold up alerts
                    log.exception("kiosk_content.redeliver_failed", node_id=node_id)
            wanted = by_site.get(site, ())
            if self._sent.get(node_id) == (boot_id, wanted):
                continue
            if await self._send(node_id, device_id, wanted):
                self._sent[node_id] = (boot_id, wanted)
                sent += 1
        return sent

    async def _send(self, node_id: str, device_id: str, alerts: tuple[KioskAlert, ...]) -> bool:
        params = KioskAlertsParams(device_id=device_id, alerts=list(alerts))
        try:
            async with self.db.session() as session:
                await self.commands.send(
                    session,
                    node_id=node_id,
                    command=CommandType.KIOSK_ALERTS_SET.value,
                    params=params.model_dump(mode="json"),
                    issued_by=ISSUED_BY,
                    ttl_s=COMMAND_TTL_S,
                )
                await session.commit()
        except CommandError as exc:
            self.errors[f"status_{exc.status}"] += 1
            log.warning("kiosk_alerts.send_failed", node_id=node_id, status=exc.status, detail=exc.detail[:200])
            return False
        self.sent += 1
        log.info("kiosk_alerts.sent", node_id=node_id, alerts=[a.alert_id for a in alerts])
        return True

    def stats(self) -> dict[str, Any]:
        """Commands sent and failures by reason."""
        return {
            "sent": self.sent,
            "errors": dict(self.errors),
            "nodes_known": len(self._sent),
            "content_redelivered": self.redelivered,
        }
