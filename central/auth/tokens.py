"""Personal API tokens: ``vt_`` plus 43 random characters, stored only as SHA-256, shown once."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from central.auth import audit
from central.auth.models import ApiToken, User
from central.auth.sessions import TOUCH_INTERVAL, hash_token
from varta.contract import utcnow

TOKEN_PREFIX = "vt_"
MAX_ACTIVE_TOKENS_PER_USER = 50


class TokenLimitError(ValueError):
    """The user already has the maximum number of active tokens."""

    code = "token_limit"


def _active(now: datetime) -> list[ColumnElement[bool]]:
    return [ApiToken.revoked.is_(False), or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now)]


async def create_token(
    session: AsyncSession,
    user: User,
    *,
    name: str,
    expires_in: timedelta | None = None,
    ip: str | None = None,
) -> tuple[str, ApiToken]:
    """Issue a token for *user*; returns the secret (shown only now) and the stored row (audited)."""
    now = utcnow()
    count = await session.scalar(
        select(func.count()).select_from(ApiToken).where(ApiToken.user_id == user.id, *_active(now))
    )
    if (count or 0) >= MAX_ACTIVE_TOKENS_PER_USER:
        raise TokenLimitError(f"at most {MAX_ACTIVE_TOKENS_PER_USER} active tokens per user")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        token_hash=hash_token(secret),
        prefix=secret[:8],
        name=name,
        user_id=user.id,
        created_at=now,
        expires_at=now + expires_in if expires_in is not None else None,
        revoked=False,
    )
    session.add(row)
    await session.flush()
    await session.refresh(row, ["user"])
    await audit.record(
        session,
        actor=user.username,
        action="token.created",
        target=f"token:{row.id}",
        detail={
            "name": name,
            "owner": user.username,
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        },
        ip=ip,
    )
    return secret, row


async def resolve_token(session: AsyncSession, secret: str) -> ApiToken | None:
    """The usable token for a bearer secret (not revoked or expired, owner active), or None."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    now = utcnow()
    row = await session.scalar(
        select(ApiToken)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_token(secret), *_active(now), User.active.is_(True))
    )
    if row is not None and (row.last_used is None or now - row.last_used >= TOUCH_INTERVAL):
        row.last_used = now
    return row


async def get_token(session: AsyncSession, token_id: int) -> ApiToken | None:
    """A token row by id."""
    return await session.get(ApiToken, token_id)


async def list_tokens(session: AsyncSession, *, user_id: int | None = None) -> list[ApiToken]:
    """Tokens of one user (or of everybody), newest first; revoked ones included."""
    stmt = select(ApiToken).order_by(ApiToken.id.desc())
    if user_id is not None:
        stmt = stmt.where(ApiToken.user_id == user_id)
    return list((await session.scalars(stmt)).all())


async def revoke_token(session: AsyncSession, token: ApiToken, *, actor: str, ip: str | None = None) -> bool:
    """Revoke *token* (audited); False when it was already revoked."""
    if token.revoked:
        return False
    token.revoked = True
    token.revoked_at = utcnow()
    await audit.record(
        session,
        actor=actor,
        action="token.revoked",
        target=f"token:{token.id}",
        detail={"name": token.name, "owner": token.user.username},
        ip=ip,
    )
    return True


def token_is_active(token: ApiToken, now: datetime | None = None) -> bool:
    """True when the token is neither revoked nor expired."""
    now = now or utcnow()
    return not token.revoked and (token.expires_at is None or token.expires_at > now)
