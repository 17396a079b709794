"""Migration 0002 (cameras): the migrated schema is exactly the models', and it goes down and up again."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from central.store.migrate import alembic_config
from central.store.models import Base


def _sync(url: str, fn: Any) -> Any:
    async def run() -> Any:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                result = await conn.run_sync(fn)
                await conn.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def test_migrated_schema_matches_the_models_and_downgrades(database_url: str) -> None:
    assert _sync(database_url, _diff) == []
    assert {"cameras", "camera_snapshots", "discovered_devices"} <= _sync(database_url, _tables)

    _sync(
        database_url,
        lambda c: c.execute(
            text(
                "INSERT INTO nodes (node_id, site, name, hostname, version, platform, capabilities, boot_id,"
                " health_interval_s, online, first_seen, box_public_key) VALUES ('n1', 's1', '', '', '', '', '[]',"
                " 'b', 30, false, '2026-01-01 00:00:00', 'key')"
            )
        ),
    )
    command.downgrade(alembic_config(database_url), "0001")
    tables = _sync(database_url, _tables)
    assert "cameras" not in tables and "discovered_devices" not in tables
    command.upgrade(alembic_config(database_url), "head")
    assert _sync(database_url, _diff) == []
    rows = _sync(database_url, lambda c: c.execute(text("SELECT node_id, box_public_key FROM nodes")).all())
    assert [tuple(r) for r in rows] == [("n1", None)]  # the node survived; its key is announced again at birth
