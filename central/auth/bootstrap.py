"""Creating accounts outside the web UI: the first admin (``varta central create-admin``) and demo users."""

from __future__ import annotations

import structlog

from central.auth import audit
from central.auth.passwords import hash_password, validate_password, verify_password
from central.auth.roles import Role
from central.auth.sessions import revoke_user_sessions
from central.auth.users import create_user, get_by_username, validate_username
from central.store.db import Database

log = structlog.get_logger(__name__)

CLI_ACTOR = "cli"


async def create_admin(db: Database, username: str, password: str) -> None:
    """Create an admin, or make an existing user an active admin with this password (audit: ``admin.created``).

    Raises :class:`central.auth.users.UserError` or :class:`central.auth.passwords.PasswordPolicyError` with a
    message fit for the terminal.
    """
    name = validate_username(username)
    validate_password(password, username=name)
    async with db.session() as session:
        user = await get_by_username(session, name)
        if user is None:
            await create_user(
                session,
                username=name,
                password=password,
                role=Role.ADMIN,
                actor=CLI_ACTOR,
                action="admin.created",
            )
        else:
            previous = {"role": user.role, "active": user.active}
            user.role = Role.ADMIN.value
            user.active = True
            user.failed_logins = 0
            user.locked_until = None
            user.password_hash = await hash_password(password)
            await revoke_user_sessions(session, user.id)
            await audit.record(
                session,
                actor=CLI_ACTOR,
                action="admin.created",
                target=f"user:{name}",
                detail={"existing": True, "previous": previous},
            )
        await session.commit()
    log.info("auth.admin_created", username=name)


async def ensure_user(db: Database, username: str, password: str, role: Role) -> None:
    """Make sure *username* exists with *role* and *password* (idempotent; for the demo and tests)."""
    name = validate_username(username)
    validate_password(password, username=name)
    async with db.session() as session:
        user = await get_by_username(session, name)
        if user is None:
            await create_user(session, username=name, password=password, role=role, actor=CLI_ACTOR)
        else:
            user.role = role.value
            user.active = True
            if not await verify_password(user.password_hash, password):
                user.password_hash = await hash_password(password)
        await session.commit()
