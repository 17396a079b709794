"""Signing in and out: password check, session creation and the matching audit rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from central.auth import audit
from central.auth.models import User, UserSession
from central.auth.sessions import create_session, end_session
from central.auth.users import authenticate
from central.config import AuthSettings

#: The one message for every failed login: it never tells whether the username exists or is locked.
LOGIN_FAILED = "invalid username or password (after repeated failures, sign-in is blocked for a while)"


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A successful login: the cookie value (never stored), the session row and its user."""

    token: str
    session: UserSession
    user: User


async def sign_in(
    session: AsyncSession,
    settings: AuthSettings,
    username: str,
    password: str,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
) -> SignedIn | None:
    """Check the password and start a session; None on failure. Commits in both cases."""
    user = await authenticate(session, settings, username, password, ip=ip)
    if user is None:
        await session.commit()
        return None
    token, row = await create_session(
        session, user, ttl=timedelta(hours=settings.session_ttl_hours), ip=ip, user_agent=user_agent
    )
    await session.commit()
    return SignedIn(token=token, session=row, user=user)


async def sign_out(session: AsyncSession, *, session_id: int, username: str, ip: str | None = None) -> None:
    """End one session (audited ``auth.logout``) and commit."""
    await end_session(session, session_id)
    await audit.record(session, actor=username, action="auth.logout", target=f"user:{username}", ip=ip)
    await session.commit()
