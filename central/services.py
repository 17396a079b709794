"""The service container every router reaches through :func:`central.deps.get_services`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from central.bus import Bus
from central.config import CentralConfig
from central.store.db import Database

if TYPE_CHECKING:
    from central.commands import CommandService
    from central.ingest.service import IngestService


@dataclass
class Services:
    """Long-lived objects of one central process."""

    config: CentralConfig
    db: Database
    bus: Bus = field(default_factory=Bus)
    ingest: IngestService | None = None
    commands: CommandService | None = None
