"""Fixtures for the alert tests: a local alert feed over real HTTP, a migrated database, a recording bus."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from central.alerts.poller import AlertService
from central.bus import Bus
from central.config import AlertSettings, AlertSourceSettings, CentralConfig, SiteSettings
from central.store.db import Database
from tests.support.alert_feed import AlertFeedServer

TOKEN = "test-token"
KYIV_OBLAST = "14"
BUCHA = "UA32080050000012345"  # a hromada in Kyiv oblast
IRPIN = "UA32080070000054321"  # another hromada in Kyiv oblast
LVIV_OBLAST = "27"

SITES = {
    "bucha-school": SiteSettings(name="Школа №3, Буча", regions=[KYIV_OBLAST, BUCHA]),
    "irpin-square": SiteSettings(name="Irpin square", regions=[KYIV_OBLAST, IRPIN]),
    "lviv-center": SiteSettings(name="Lviv center", regions=[LVIV_OBLAST]),
}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass
class RecordingBus(Bus):
    """The real bus, also remembering what was published (for assertions)."""

    published: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        self.published.append((kind, data))
        super().publish(kind, data)

    def alerts(self, change: str | None = None) -> list[dict[str, Any]]:
        return [d for k, d in self.published if k == "alert" and (change is None or d["change"] == change)]


@pytest.fixture
def feed() -> Iterator[AlertFeedServer]:
    server = AlertFeedServer(token=TOKEN).start()
    try:
        yield server
    finally:
        server.stop()


def alert_config(database_url: str, sources: list[AlertSourceSettings], **alerts: Any) -> CentralConfig:
    return CentralConfig(
        database_url=database_url,
        sites=SITES,
        alerts=AlertSettings(sources=sources, **alerts),
    )


def source(feed: AlertFeedServer, name: str = "aiu", **kw: Any) -> AlertSourceSettings:
    kind = kw.pop("kind", "alerts_in_ua")
    data: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "url": feed.cap_url if kind == "cap" else feed.url,
        "token": TOKEN,
    }
    data.update(kw)
    return AlertSourceSettings(**data)


@dataclass
class AlertEnv:
    db: Database
    bus: RecordingBus
    clock: Clock
    database_url: str
    services: list[AlertService] = field(default_factory=list)

    def service(self, *sources: AlertSourceSettings, **alerts: Any) -> AlertService:
        config = alert_config(self.database_url, list(sources), **alerts)
        service = AlertService(config, self.db, self.bus, min_interval_s=0.0, clock=self.clock)
        self.services.append(service)
        return service


async def _env(database_url: str) -> AsyncIterator[AlertEnv]:
    db = Database(database_url)
    env = AlertEnv(db=db, bus=RecordingBus(), clock=Clock(), database_url=database_url)
    try:
        yield env
    finally:
        for service in env.services:
            await service.aclose()
        await db.dispose()


@pytest.fixture
async def alert_env(sqlite_url: str) -> AsyncIterator[AlertEnv]:
    """The alert service's surroundings on SQLite."""
    async for env in _env(sqlite_url):
        yield env


@pytest.fixture
async def any_alert_env(database_url: str) -> AsyncIterator[AlertEnv]:
    """The same on both store back-ends (SQLite and PostgreSQL), for what the SQL must get right."""
    async for env in _env(database_url):
        yield env
