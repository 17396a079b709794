"""The service container every router reaches through :func:`central.deps.get_services`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from central.bus import Bus
from central.config import CentralConfig
from central.store.db import Database

if TYPE_CHECKING:
    from central.alerts.poller import AlertService
    from central.commands import CommandService
    from central.incidents.engine import IncidentEngine
    from central.ingest.service import IngestService
    from central.kiosks.alerts import KioskAlertDispatcher
    from central.notify.service import NotificationService


@dataclass
class Services:
    """Long-lived objects of one central process."""

    config: CentralConfig
    db: Database
    bus: Bus = field(default_factory=Bus)
    ingest: IngestService | None = None
    commands: CommandService | None = None
    alerts: AlertService | None = None
    incidents: IncidentEngine | None = None
    kiosk_alerts: KioskAlertDispatcher | None = None
    notifications: NotificationService | None = None
