"""Fixtures for the incident tests: a migrated store (SQLite and PostgreSQL), a fleet writer and an engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from central.bus import Bus
from central.config import CentralConfig
from central.incidents.engine import IncidentEngine
from central.store.db import Database
from tests.central.incidents.support import Fleet, make_config


@dataclass
class IncidentEnv:
    """A store, a fleet writing into it, and an engine evaluating it."""

    config: CentralConfig
    db: Database
    bus: Bus
    fleet: Fleet
    engine: IncidentEngine


@pytest.fixture
async def env(database_url: str) -> AsyncIterator[IncidentEnv]:
    config = make_config(database_url)
    db = Database(database_url)
    bus = Bus()
    try:
        yield IncidentEnv(config, db, bus, Fleet(db), IncidentEngine(config, db, bus))
    finally:
        await db.dispose()
