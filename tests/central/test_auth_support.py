"""Shared set-up for the auth, dashboard and access-matrix tests (this module holds no tests itself).

``central_env`` is the real app from :func:`central.app.create_app` (no broker), its lifespan run (so the
Alembic migrations created a temporary SQLite database), and an httpx client talking to it in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from central.app import create_app
from central.auth import tokens as token_service
from central.auth import users as user_service
from central.auth.models import AuditEntry, User
from central.auth.roles import Role
from central.auth.sessions import COOKIE_NAME, create_session
from central.config import AuthSettings, CentralConfig, CommandSettings, HttpSettings
from central.store.db import Database

BASE_URL = "http://testserver"
ORIGIN = {"origin": BASE_URL}
PASSWORD = "correct horse battery staple"


@dataclass
class CentralEnv:
    """The app under test, its database and a client (which keeps cookies like a browser)."""

    app: FastAPI
    config: CentralConfig
    client: httpx.AsyncClient

    @property
    def db(self) -> Database:
        db: Database = self.app.state.services.db
        return db

    async def add_user(self, username: str, role: Role, password: str = PASSWORD, **kw: Any) -> User:
        """Create an active user directly in the database."""
        async with self.db.session() as session:
            user = await user_service.create_user(
                session, username=username, password=password, role=role, actor="test", **kw
            )
            await session.commit()
            return user

    async def get_user(self, username: str) -> User:
        async with self.db.session() as session:
            user = await user_service.get_by_username(session, username)
            assert user is not None
            return user

    async def session_token(self, username: str) -> str:
        """A fresh session for *username*, made directly in the database (no argon2, no audit)."""
        async with self.db.session() as session:
            user = await user_service.get_by_username(session, username)
            assert user is not None
            token, _ = await create_session(session, user, ttl=timedelta(hours=1))
            await session.commit()
            return token

    async def api_token(self, username: str, *, name: str = "test", expires_in: timedelta | None = None) -> str:
        """A fresh personal API token for *username*, made directly in the database."""
        async with self.db.session() as session:
            user = await user_service.get_by_username(session, username)
            assert user is not None
            secret, _ = await token_service.create_token(session, user, name=name, expires_in=expires_in)
            await session.commit()
            return secret

    async def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        """Sign in through the API; on success the client holds the session cookie."""
        return await self.client.post("/api/v1/auth/login", json={"username": username, "password": password})

    async def audit(self, action: str | None = None) -> list[AuditEntry]:
        """Audit rows, oldest first (optionally of one action)."""
        async with self.db.session() as session:
            stmt = select(AuditEntry).order_by(AuditEntry.id)
            if action is not None:
                stmt = stmt.where(AuditEntry.action == action)
            return list((await session.scalars(stmt)).all())


def make_config(tmp_path: Path, **overrides: Any) -> CentralConfig:
    """A config for an isolated central on a temporary SQLite database."""
    data: dict[str, Any] = {
        "instance_id": "central-test",
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/central.db",
        "data_dir": tmp_path,
        "auth": AuthSettings(max_failed_logins=3, lockout_minutes=5),
        "commands": CommandSettings(signing_key_file=tmp_path / "signing.key"),
        "http": HttpSettings(public_url="https://varta.example.city"),
    }
    data.update(overrides)
    return CentralConfig(**data)


@pytest.fixture
async def central_env(tmp_path: Path) -> AsyncIterator[CentralEnv]:
    config = make_config(tmp_path)
    app = create_app(config, start_background=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield CentralEnv(app=app, config=config, client=client)


def with_cookie(token: str, **headers: str) -> dict[str, str]:
    """Request headers sending *token* as the session cookie (use with a client holding no cookies)."""
    return {"cookie": f"{COOKIE_NAME}={token}", **headers}


def cookie_of(response: httpx.Response) -> str | None:
    """The session cookie value a response sets, if any."""
    return response.cookies.get(COOKIE_NAME)
