"""User accounts: creation, roles, activation, passwords and password login with lockout."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from central.auth import audit
from central.auth.models import User
from central.auth.passwords import (
    burn_verify_time,
    hash_password,
    needs_rehash,
    validate_password,
    verify_password,
)
from central.auth.roles import Role
from central.auth.sessions import revoke_user_sessions
from central.config import AuthSettings
from varta.contract import utcnow

log = structlog.get_logger(__name__)

USERNAME_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{1,63}$"
_USERNAME_RE: Final = re.compile(USERNAME_PATTERN)
LANGUAGES: Final = ("uk", "en")


class UserError(ValueError):
    """A user change that cannot be made: a message for the person who asked and a ``code`` to translate."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class UsernameTaken(UserError):
    """Another account already has this username."""


def normalize_username(username: str) -> str:
    """Usernames are case-insensitive: stored and compared in lower case, without surrounding spaces."""
    return username.strip().lower()


def validate_username(username: str) -> str:
    """The normalized username, or :class:`UserError` when it is not allowed."""
    name = normalize_username(username)
    if not _USERNAME_RE.match(name):
        raise UserError(
            "username_invalid",
            "the username must be 2–64 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return name


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    """A user by id."""
    return await session.get(User, user_id)


async def get_by_username(session: AsyncSession, username: str) -> User | None:
    """A user by (case-insensitive) username."""
    return await session.scalar(select(User).where(User.username == normalize_username(username)))


async def list_users(session: AsyncSession) -> list[User]:
    """Every user, by username."""
    return list((await session.scalars(select(User).order_by(User.username))).all())


async def create_user(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    role: Role,
    display_name: str = "",
    language: str | None = None,
    actor: str | None,
    ip: str | None = None,
    action: str = "user.created",
) -> User:
    """Create an active user (audited as *action*); raises :class:`UserError` or ``PasswordPolicyError``."""
    name = validate_username(username)
    validate_password(password, username=name)
    if language is not None and language not in LANGUAGES:
        raise UserError("unknown_language", f"unknown language {language!r}")
    if await get_by_username(session, name) is not None:
        raise UsernameTaken("username_taken", f"the username {name!r} is taken")
    user = User(
        username=name,
        display_name=display_name.strip(),
        password_hash=await hash_password(password),
        role=role.value,
        active=True,
        failed_logins=0,
        language=language,
        created_at=utcnow(),
    )
    session.add(user)
    await session.flush()
    await audit.record(session, actor=actor, action=action, target=f"user:{name}", detail={"role": role.value}, ip=ip)
    return user


async def _active_admins(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).select_from(User).where(User.role == Role.ADMIN.value, User.active.is_(True))
    )
    return int(count or 0)


async def _keep_an_admin(session: AsyncSession, user: User) -> None:
    if user.role == Role.ADMIN.value and user.active and await _active_admins(session) <= 1:
        raise UserError("last_admin", "this is the last active admin: make someone else admin first")


async def set_role(session: AsyncSession, user: User, role: Role, *, actor: str, ip: str | None = None) -> bool:
    """Change a user's role (audited); False when it already had it."""
    if user.role == role.value:
        return False
    if role is not Role.ADMIN:
        await _keep_an_admin(session, user)
    old = user.role
    user.role = role.value
    await audit.record(
        session,
        actor=actor,
        action="user.role_changed",
        target=f"user:{user.username}",
        detail={"from": old, "to": role.value},
        ip=ip,
    )
    return True


async def set_active(session: AsyncSession, user: User, active: bool, *, actor: str, ip: str | None = None) -> bool:
    """Deactivate (ending their sessions) or reactivate a user (audited); False when nothing changed."""
    if user.active == active:
        return False
    if not active:
        await _keep_an_admin(session, user)
        await revoke_user_sessions(session, user.id)
    user.active = active
    if active:
        user.failed_logins = 0
        user.locked_until = None
    await audit.record(
        session,
        actor=actor,
        action="user.activated" if active else "user.deactivated",
        target=f"user:{user.username}",
        ip=ip,
    )
    return True


async def set_display_name(
    session: AsyncSession, user: User, display_name: str, *, actor: str, ip: str | None = None
) -> bool:
    """Rename a user's display name (audited); False when unchanged."""
    new = display_name.strip()
    if new == user.display_name:
        return False
    old = user.display_name
    user.display_name = new
    await audit.record(
        session,
        actor=actor,
        action="user.updated",
        target=f"user:{user.username}",
        detail={"display_name": {"from": old, "to": new}},
        ip=ip,
    )
    return True


async def reset_password(
    session: AsyncSession, user: User, password: str, *, actor: str, ip: str | None = None
) -> None:
    """An admin sets a new password: every session of the user ends and any lockout is lifted (audited)."""
    validate_password(password, username=user.username)
    user.password_hash = await hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    await revoke_user_sessions(session, user.id)
    await audit.record(session, actor=actor, action="user.password_reset", target=f"user:{user.username}", ip=ip)


async def change_own_password(
    session: AsyncSession,
    user: User,
    current: str,
    new: str,
    *,
    keep_session_id: int | None,
    ip: str | None = None,
) -> bool:
    """A user changes their own password; False (audited as a failure) when *current* is wrong.

    Every other session of the user ends; the one making the change (*keep_session_id*) stays.
    """
    if not await verify_password(user.password_hash, current):
        await audit.record(
            session,
            actor=user.username,
            action="user.password_changed",
            target=f"user:{user.username}",
            detail={"reason": "wrong_current_password"},
            ip=ip,
            success=False,
        )
        return False
    validate_password(new, username=user.username)
    user.password_hash = await hash_password(new)
    await revoke_user_sessions(session, user.id, keep_id=keep_session_id)
    await audit.record(
        session, actor=user.username, action="user.password_changed", target=f"user:{user.username}", ip=ip
    )
    return True


def set_language(user: User, language: str | None) -> None:
    """Store a user's language preference (``None``: follow the browser cookie / server default)."""
    if language is not None and language not in LANGUAGES:
        raise UserError("unknown_language", f"unknown language {language!r}")
    user.language = language


async def authenticate(
    session: AsyncSession,
    settings: AuthSettings,
    username: str,
    password: str,
    *,
    ip: str | None = None,
) -> User | None:
    """Check a username and password; the user on success, None on any failure (all audited).

    Unknown users cost the same argon2 time as known ones. After ``settings.max_failed_logins`` consecutive
    failures the account is locked for ``settings.lockout_minutes``; while locked even the right password
    fails.
    The caller commits (also on failure: the failure counter and the audit row must be stored).
    """
    name = normalize_username(username)[:64]
    user = await get_by_username(session, name) if name else None
    if user is None:
        await burn_verify_time(password)
        await _failed(session, name or None, "unknown_user", ip)
        return None
    ok = await verify_password(user.password_hash, password)
    now = utcnow()
    if not user.active:
        await _failed(session, user.username, "inactive", ip)
        return None
    if user.locked_until is not None and user.locked_until > now:
        await _failed(session, user.username, "locked", ip)
        return None
    if not ok:
        failures = await session.scalar(
            update(User)
            .where(User.id == user.id)
            .values(failed_logins=User.failed_logins + 1)
            .returning(User.failed_logins)
            .execution_options(synchronize_session=False)
        )
        await session.refresh(user)
        locked = (failures or 0) >= settings.max_failed_logins
        if locked:
            user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
            user.failed_logins = 0
            log.warning("auth.locked", username=user.username, minutes=settings.lockout_minutes)
            await audit.record(
                session,
                actor=user.username,
                action="auth.locked",
                target=f"user:{user.username}",
                detail={"minutes": settings.lockout_minutes},
                ip=ip,
            )
        await _failed(session, user.username, "bad_password", ip, locked=locked)
        return None
    user.failed_logins = 0
    user.locked_until = None
    user.last_login = now
    if needs_rehash(user.password_hash):
        user.password_hash = await hash_password(password)
    await audit.record(session, actor=user.username, action="auth.login", target=f"user:{user.username}", ip=ip)
    return user


async def _failed(
    session: AsyncSession, actor: str | None, reason: str, ip: str | None, *, locked: bool = False
) -> None:
    detail: dict[str, object] = {"reason": reason}
    if locked:
        detail["locked"] = True
    await audit.record(
        session,
        actor=actor,
        action="auth.login_failed",
        target=f"user:{actor}" if actor else None,
        detail=detail,
        ip=ip,
        success=False,
    )
