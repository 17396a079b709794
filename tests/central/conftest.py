"""Fixtures for central: a migrated database and a running ingest against the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from central.bus import Bus
from central.config import IngestSettings
from central.ingest.service import IngestService
from central.store.db import Database
from central.store.migrate import upgrade
from tests.support.broker import Broker
from varta.mqtt import MqttClient
from varta.mqtt311 import Mqtt311Subscriber

PG_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database file."""
    url = f"sqlite+aiosqlite:///{tmp_path}/central.db"
    upgrade(url)
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database (dropped afterwards). Fails if PostgreSQL is not running."""
    name = f"varta_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(sql))
        await engine.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    upgrade(url)
    try:
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Both store back-ends: SQLite (default) and PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@dataclass
class IngestEnv:
    """A running ingest: the service, its database and bus, and a publisher client on the same broker."""

    ingest: IngestService
    db: Database
    bus: Bus
    publisher: MqttClient


@pytest.fixture
async def ingest_env(broker: Broker, database_url: str) -> AsyncIterator[IngestEnv]:
    db = Database(database_url)
    bus = Bus()
    # Central's default ingest connection (``ingest.mqtt_protocol: 3.1.1``).
    mqtt = Mqtt311Subscriber(broker.settings(), client_id=f"central-{uuid.uuid4().hex[:6]}")
    ingest = IngestService(mqtt, db, bus, IngestSettings(batch_wait_s=0.01))
    ingest.subscribe()
    publisher = MqttClient(broker.settings(), client_id=f"pub-{uuid.uuid4().hex[:6]}", clean_start=True)
    tasks = [
        asyncio.create_task(mqtt.run()),
        asyncio.create_task(ingest.run()),
        asyncio.create_task(publisher.run()),
    ]
    await mqtt.wait_connected(10)
    await publisher.wait_connected(10)
    try:
        yield IngestEnv(ingest, db, bus, publisher)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await mqtt.stop()
        await publisher.stop()
        await db.dispose()
