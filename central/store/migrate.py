"""Alembic migrations, run programmatically (``varta central migrate`` and at central start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(database_url: str) -> AlembicConfig:
    """An Alembic config for *database_url* using the migrations shipped in this package."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def prepare_sqlite_dir(database_url: str) -> None:
    """Create the folder of a SQLite database file."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at *database_url* to *revision* (blocking: call from a thread in async code)."""
    prepare_sqlite_dir(database_url)
    command.upgrade(alembic_config(database_url), revision)
