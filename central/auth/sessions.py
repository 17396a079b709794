"""Dashboard login sessions: a random cookie value, stored only as its SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from central.auth.models import User, UserSession
from varta.contract import utcnow

COOKIE_NAME = "varta_session"
#: ``last_seen`` is written at most this often per session (one write per request would be wasteful).
TOUCH_INTERVAL = timedelta(seconds=60)


def hash_token(token: str) -> str:
    """SHA-256 (hex) of a session or API token: what the database stores instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create_session(
    session: AsyncSession,
    user: User,
    *,
    ttl: timedelta,
    ip: str | None = None,
    user_agent: str | None = None,
) -> tuple[str, UserSession]:
    """Start a session for *user*; returns the cookie value (shown only here) and the row."""
    now = utcnow()
    await session.execute(delete(UserSession).where(UserSession.expires_at <= now))
    token = secrets.token_urlsafe(32)
    row = UserSession(
        token_hash=hash_token(token),
        user_id=user.id,
        created_at=now,
        expires_at=now + ttl,
        last_seen=now,
        ip=ip,
        user_agent=(user_agent or "")[:300] or None,
    )
    session.add(row)
    await session.flush()
    return token, row


async def resolve_session(session: AsyncSession, token: str) -> UserSession | None:
    """The live session for a cookie value (not expired, user active), or None; refreshes ``last_seen``."""
    if not token or len(token) > 200:
        return None
    now = utcnow()
    row = await session.scalar(
        select(UserSession)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.token_hash == hash_token(token), UserSession.expires_at > now, User.active.is_(True))
    )
    if row is not None and now - row.last_seen >= TOUCH_INTERVAL:
        row.last_seen = now
    return row


async def end_session(session: AsyncSession, session_id: int) -> None:
    """Delete one session (logout)."""
    await session.execute(delete(UserSession).where(UserSession.id == session_id))


async def revoke_user_sessions(session: AsyncSession, user_id: int, *, keep_id: int | None = None) -> int:
    """Delete every session of a user (except *keep_id*); returns how many were deleted."""
    stmt = delete(UserSession).where(UserSession.user_id == user_id)
    if keep_id is not None:
        stmt = stmt.where(UserSession.id != keep_id)
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)


async def list_user_sessions(session: AsyncSession, user_id: int) -> list[UserSession]:
    """Live sessions of a user, newest first."""
    rows = await session.scalars(
        select(UserSession)
        .where(UserSession.user_id == user_id, UserSession.expires_at > utcnow())
        .order_by(UserSession.created_at.desc())
    )
    return list(rows.all())
